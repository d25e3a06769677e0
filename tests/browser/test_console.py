"""The web console as a user sees it, in headless Chromium against the whole running system."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from browser_stack import DESKTOP, IMAGE_MODEL, PHONE, SLOW, VIDEO_MODEL, Console
from playwright.async_api import Locator, Page, expect

from assetgen_dev.fake_providers.media import make_png
from assetgen_dev.testing import eventually


async def sign_in(page: Page, token: str, path: str = "/") -> None:
    await page.goto(path)
    await page.get_by_label("API key", exact=True).fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_label("API key", exact=True)).to_have_count(0)
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def card(page: Page, asset_id: str) -> Locator:
    return page.locator(f'li[data-asset-id="{asset_id}"]')


async def natural_width(image: Locator) -> int:
    await expect(image).to_be_visible()
    await image.evaluate("img => img.decode()")
    return int(await image.evaluate("img => img.naturalWidth"))


async def generate(page: Page, prompt: str, model: str = IMAGE_MODEL) -> None:
    await page.get_by_label("Model").select_option(model)
    await page.get_by_label("Prompt").fill(prompt)
    await page.get_by_role("button", name="Generate").click()


async def test_a_wrong_key_is_refused_in_the_apis_words(page: Page) -> None:
    await page.goto("/")
    # By keyboard alone: the field has focus, Enter submits.
    await page.keyboard.type("not-a-key")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_have_text("invalid bearer token")
    assert await page.evaluate("sessionStorage.length") == 0


async def test_sign_in_and_create_a_box(page: Page, console: Console) -> None:
    response = await page.goto("/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "img-src 'self' http://127.0.0.1:" in policy
    await sign_in(page, console.token)
    assert await page.evaluate("sessionStorage.getItem('assetgen.apiKey')") == console.token
    name = f"Spring campaign {uuid.uuid4().hex[:6]}"
    await page.get_by_label("Box name").fill(name)
    await page.get_by_role("button", name="Create box").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    assert re.fullmatch(r".*/boxes/[\w-]+", page.url)
    box_id = page.url.rsplit("/", 1)[1]
    assert (await console.http.get(f"/api/boxes/{box_id}/")).json()["name"] == name
    # A shared link opens the same box; the key never appears in a URL.
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    assert console.token not in page.url


async def test_boxes_are_listed_with_counts_renamed_and_deleted(page: Page, console: Console) -> None:
    box_id = await console.box(f"Listed {uuid.uuid4().hex[:6]}")
    upload = await console.http.post(
        f"/api/boxes/{box_id}/upload/", files={"file": ("a.png", make_png("listed"), "image/png")}
    )
    assert upload.status_code == 201, upload.text
    await sign_in(page, console.token)
    row = page.locator(f'li[data-box-id="{box_id}"]')
    await expect(row.locator('[data-count-status="COMPLETED"]')).to_have_text("1 completed")
    await row.get_by_role("button", name="Rename").click()
    renamed = f"Renamed {uuid.uuid4().hex[:6]}"
    await row.get_by_role("textbox").fill(renamed)
    await row.get_by_role("button", name="Save").click()
    await expect(row.get_by_role("link", name=renamed)).to_be_visible()
    await row.get_by_role("button", name="Delete").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete box").click()
    await expect(row).to_have_count(0)
    assert (await console.http.get(f"/api/boxes/{box_id}/")).status_code == 404


async def test_generate_an_image_and_see_it_without_reloading(page: Page, console: Console) -> None:
    box_id = await console.box("Generate here")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    await page.evaluate("window.notReloaded = true")
    await generate(page, "a red fox in the snow")
    done = page.locator('li[data-status="COMPLETED"]')
    await expect(done).to_have_count(1, timeout=30_000)
    assert await natural_width(done.locator("img")) > 0
    assert await page.evaluate("window.notReloaded") is True
    assert await done.get_attribute("data-asset-id")


async def test_api_errors_are_shown_as_worded(page: Page, console: Console) -> None:
    box_id = await console.box("Errors")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    await generate(page, "a fox", model=VIDEO_MODEL)  # needs image_urls, none given
    alert = page.locator("form.compose").get_by_role("alert")
    await expect(alert).to_be_visible()
    refusal = await console.http.post(
        f"/api/boxes/{box_id}/generate/", json={"model": VIDEO_MODEL, "prompt": "a fox"}
    )
    expected = refusal.json()["error"]
    await expect(alert).to_have_text(expected)


async def test_a_generation_started_through_the_api_appears_live(page: Page, console: Console) -> None:
    box_id = await console.box("Live")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    response = await console.http.post(
        f"/api/boxes/{box_id}/generate/", json={"model": IMAGE_MODEL, "prompt": "made elsewhere"}
    )
    assert response.status_code == 202, response.text
    asset = card(page, response.json()["id"])
    await expect(asset).to_be_visible()
    await expect(asset).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    assert await natural_width(asset.locator("img")) > 0


async def test_the_stream_resumes_after_a_drop(page: Page, console: Console) -> None:
    box_id = await console.box("Resume")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    live = page.get_by_role("status").filter(has_text="Live")
    await expect(live).to_be_visible()
    await page.evaluate("window.assetgenStream.drop()")
    response = await console.http.post(
        f"/api/boxes/{box_id}/generate/", json={"model": IMAGE_MODEL, "prompt": "after the drop"}
    )
    resumed = card(page, response.json()["id"])
    await expect(resumed).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    await expect(live).to_be_visible()


async def test_upload_a_file_by_the_picker(page: Page, console: Console, tmp_path: Path) -> None:
    box_id = await console.box("Uploads")
    picture = tmp_path / "moodboard.png"
    picture.write_bytes(make_png("moodboard"))
    await sign_in(page, console.token, f"/boxes/{box_id}")
    await page.get_by_label("Choose files").set_input_files(picture)
    await expect(page.locator('.uploads li[data-state="done"]')).to_have_count(1)
    uploaded = page.locator('li[data-source="UPLOADED"]')
    await expect(uploaded).to_have_attribute("data-status", "COMPLETED")
    assert await natural_width(uploaded.locator("img")) > 0


async def test_upload_a_file_by_drag_and_drop(page: Page, console: Console) -> None:
    box_id = await console.box("Dropped")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    dropped = await page.evaluate_handle(
        """async (base64) => {
            const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(make_png("dropped")).decode(),
    )
    await page.locator(".drop-zone").dispatch_event("drop", {"dataTransfer": dropped})
    uploaded = page.locator('li[data-source="UPLOADED"]')
    await expect(uploaded).to_have_attribute("data-status", "COMPLETED")
    assert await natural_width(uploaded.locator("img")) > 0


async def test_cancel_a_slow_generation(page: Page, console: Console) -> None:
    box_id = await console.box("Cancel")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    await generate(page, f"{SLOW} a long film")
    running = page.locator("li.asset").first
    await expect(running).to_have_attribute("data-status", re.compile("PENDING|PROCESSING"))
    await running.get_by_role("button", name="Cancel").click()
    await expect(running).to_have_attribute("data-status", "CANCELED")
    await expect(running.get_by_role("button", name="Retry")).to_be_visible()
    asset_id = await running.get_attribute("data-asset-id")
    assert (await console.http.get(f"/api/assets/{asset_id}/")).json()["status"] == "CANCELED"


async def test_history_and_delete_of_an_asset(page: Page, console: Console) -> None:
    box_id = await console.box("History")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    await generate(page, "history please")
    done = page.locator('li[data-status="COMPLETED"]')
    await expect(done).to_have_count(1, timeout=30_000)
    await done.get_by_role("button", name="History").click()
    history = page.get_by_role("dialog")
    await expect(history.get_by_role("cell", name=re.compile("→ COMPLETED"))).to_be_visible()
    await history.get_by_role("button", name="Close").click()
    await done.get_by_role("button", name="Open").click()
    full_size = page.get_by_role("dialog").locator("img.full")
    assert await natural_width(full_size) > 0
    await page.get_by_role("dialog").get_by_role("button", name="Close").click()
    await expect(page.get_by_role("dialog")).to_have_count(0)
    asset_id = await done.get_attribute("data-asset-id")
    await done.get_by_role("button", name="Delete").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete asset").click()
    await expect(card(page, str(asset_id))).to_have_count(0)
    assert (await console.http.get(f"/api/assets/{asset_id}/")).status_code == 404


async def test_the_operators_page_lists_providers(page: Page, console: Console, artifacts: Path) -> None:
    await sign_in(page, console.token)
    await page.get_by_role("link", name="Operators").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Operators")
    provider = page.locator('tr[data-provider="kie"]')
    await expect(provider).to_contain_text(console.provider.base_url)
    await expect(provider).to_contain_text("configured")
    await expect(page.locator(f'tr[data-model="{IMAGE_MODEL}"]')).to_contain_text("prompt")
    await page.screenshot(path=artifacts / "operators-desktop.png", full_page=True)
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=artifacts / "operators-phone.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


async def test_a_bad_model_template_is_refused_with_a_reason(page: Page, console: Console) -> None:
    await sign_in(page, console.token, "/admin")
    row = page.locator(f'tr[data-model="{IMAGE_MODEL}"]')
    await row.get_by_role("button", name="Edit template").click()
    editor = page.get_by_label(f"Request template of {IMAGE_MODEL}")
    await editor.fill("{not json")
    await page.get_by_role("button", name="Save template").click()
    await expect(page.get_by_role("alert")).to_contain_text("The template is not JSON")


async def _read_key(console: Console) -> dict[str, Any]:
    """A new read-only key of the default project; xfails while the API has no scoped keys."""
    body = {"name": f"viewer-{uuid.uuid4().hex[:6]}", "project": "default", "scopes": ["read"]}
    created = await console.http.post("/api/keys/", json=body)
    if created.status_code in (404, 405, 501):
        pytest.xfail("scoped API keys do not exist yet (issue 21): POST /api/keys/ answers 404")
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_operators_see_projects_and_keys(page: Page, console: Console) -> None:
    key = await _read_key(console)
    await sign_in(page, console.token, "/admin")
    await expect(page.get_by_role("heading", name="Projects and keys")).to_be_visible()
    row = page.locator(f'tr[data-key="{key["id"]}"]')
    await expect(row).to_contain_text("read")
    await expect(row).to_contain_text("valid")
    assert key["key"] not in await page.content()


async def test_a_read_key_sees_no_generate_form(page: Page, console: Console, artifacts: Path) -> None:
    created = await _read_key(console)
    box_id = await console.box("Read only")
    upload = await console.http.post(
        f"/api/boxes/{box_id}/upload/", files={"file": ("seen.png", make_png("seen"), "image/png")}
    )
    assert upload.status_code == 201, upload.text
    await sign_in(page, created["key"], f"/boxes/{box_id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Read only")
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    seen = card(page, upload.json()["id"])
    assert await natural_width(seen.locator("img")) > 0
    await expect(seen.get_by_role("button", name="History")).to_be_visible()
    await expect(seen.get_by_role("button", name="Delete")).to_have_count(0)
    await expect(page.get_by_role("button", name="Generate")).to_have_count(0)
    await expect(page.get_by_label("Choose files")).to_have_count(0)
    await expect(page.get_by_role("link", name="Operators")).to_have_count(0)
    await page.screenshot(path=artifacts / "box-read-only.png", full_page=True)


async def test_screenshots_of_a_box_at_desktop_and_phone_widths(
    page: Page, console: Console, artifacts: Path
) -> None:
    box_id = await console.box("Autumn campaign")
    picture = await console.http.post(
        f"/api/boxes/{box_id}/upload/", files={"file": ("reference.png", make_png("reference"), "image/png")}
    )
    parent = picture.json()["id"]
    for body in [
        {"model": IMAGE_MODEL, "prompt": "a red fox at dawn, golden light"},
        {"model": IMAGE_MODEL, "prompt": "forest path in fog"},
        {"model": IMAGE_MODEL, "prompt": "[fail] a broken request"},
        {"model": VIDEO_MODEL, "prompt": "slow pan over the fox", "parent_asset": parent},
        {"model": IMAGE_MODEL, "prompt": f"{SLOW} still rendering"},
    ]:
        response = await console.http.post(f"/api/boxes/{box_id}/generate/", json=body)
        assert response.status_code == 202, response.text

    async def settled() -> int:
        items = (await console.http.get(f"/api/boxes/{box_id}/assets/")).json()["items"]
        return sum(item["status"] in ("COMPLETED", "FAILED") for item in items)

    await eventually(settled, lambda count: count == 5, timeout=30, what="four settled generations")
    await sign_in(page, console.token, f"/boxes/{box_id}")
    await expect(page.locator('li[data-status="COMPLETED"]')).to_have_count(4)
    await expect(page.locator('li[data-status="FAILED"] .asset-error')).to_be_visible()
    for image in await page.locator('li[data-status="COMPLETED"] img').all():
        assert await natural_width(image) > 0
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    await page.screenshot(path=artifacts / "box-desktop.png", full_page=True)
    assert DESKTOP == page.viewport_size
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=artifacts / "box-phone.png", full_page=True)
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= PHONE["width"], "the box page scrolls sideways on a phone"
