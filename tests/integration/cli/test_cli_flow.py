"""The seed's management flow through the assetgen CLI, against the four services and a Kie-like provider."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from assetgen_cli.main import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, run_cli
from assetgen_dev.demo_provider import demo_provider, make_png
from assetgen_dev.stack import Stack, WholeStackFactory
from assetgen_dev.testing import eventually

PROVIDER_KEY = "cli-kie-key-456"
IMAGE_SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}", "aspect_ratio": "{{aspect_ratio?}}"}}
VIDEO_SCHEMA = {
    "model": "demo/video",
    "input": {"prompt": "{{prompt}}", "image_urls": "{{image_urls}}", "duration": "{{duration?}}"},
}


@dataclass
class Env:
    """The running system and the CLI's environment for it."""

    stack: Stack
    environ: dict[str, str]
    provider_url: str
    slow_provider_url: str

    async def run(self, *argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await run_cli(list(argv), environ=environ or self.environ, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    async def run_json(self, *argv: str) -> Any:
        code, out, err = await self.run(*argv, "--json")
        assert code == EXIT_OK, err
        return json.loads(out)


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    provider = demo_provider(PROVIDER_KEY, delay=0.3)
    # A provider that takes far longer than any test, so a cancel always lands in flight.
    slow = demo_provider(PROVIDER_KEY, delay=600)
    async with whole_stack(tmp_path_factory.mktemp("cli"), fakes=[provider, slow]) as system:
        stack = system.stack
        environ = {"ASSETGEN_URL": stack.grpc_address, "ASSETGEN_TOKEN": stack.token}
        yield Env(stack, {**environ, "KIE_API_KEY": PROVIDER_KEY}, provider.base_url, slow.base_url)


async def test_the_seeds_management_flow(env: Env, tmp_path: Path) -> None:
    code, out, _ = await env.run("presets", "list")
    assert code == EXIT_OK and "kie-ai" in out

    code, _, err = await env.run(
        "providers",
        "add",
        "kie",
        "--preset",
        "kie-ai",
        "--base-url",
        env.provider_url,
        "--api-key-env",
        "KIE_API_KEY",
    )
    assert code == EXIT_OK, err
    providers = await env.run_json("providers", "list")
    kie = next(p for p in providers["items"] if p["name"] == "kie")
    assert kie["has_api_key"] is True and PROVIDER_KEY not in json.dumps(providers)

    schema_file = tmp_path / "video.json"
    schema_file.write_text(json.dumps(VIDEO_SCHEMA))
    code, _, err = await env.run(
        "models", "add", "img", "--provider", "kie", "--type", "IMAGE", "--schema", json.dumps(IMAGE_SCHEMA)
    )
    assert code == EXIT_OK, err
    code, _, err = await env.run(
        "models", "add", "vid", "--provider", "kie", "--type", "video", "--schema", f"@{schema_file}"
    )
    assert code == EXIT_OK, err
    code, out, _ = await env.run("models", "list")
    assert code == EXIT_OK
    assert any(
        line.split()[:3] == ["vid", "kie", "VIDEO"] and "image_urls*" in line for line in out.splitlines()
    )

    box = (await env.run_json("boxes", "create", "campaign"))["id"]
    code, out, _ = await env.run("boxes", "list")
    assert f"{box}  campaign" in out

    # test_generation: an image, waited for with live progress, then the file URL.
    code, out, err = await env.run(
        "generate", box, "--model", "img", "--prompt", "a red fox", "--set", "aspect_ratio=16:9", "--wait"
    )
    assert code == EXIT_OK, err
    url = out.strip()
    statuses = [line.split()[1] for line in err.splitlines()]
    assert statuses[0] == "PENDING" and statuses[-1] == "COMPLETED" and "PROCESSING" in statuses
    async with httpx.AsyncClient(timeout=30) as plain:
        assert (await plain.get(url)).content.startswith(b"\x89PNG")
    image_id = err.split()[0]

    # test_video_generation: a video from that image.
    code, out, err = await env.run(
        "generate", box, "--model", "vid", "--prompt", "the fox runs", "--parent", image_id,
        "--set", "duration=8", "--wait", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    video = json.loads(out)
    assert video["status"] == "COMPLETED" and video["source_type"] == "IMG2VID"
    assert video["parent_asset"] == image_id and video["config"] == {"duration": "8"}
    assert video["content_type"] == "video/mp4"

    # --json is the HTTP API's JSON (file URLs are signed afresh on every read, so they differ).
    shown = await env.run_json("asset", "show", video["id"])
    async with httpx.AsyncClient(
        base_url=env.stack.http_url, headers={"Authorization": f"Bearer {env.stack.token}"}, timeout=30
    ) as http:
        over_http = (await http.get(f"/api/assets/{video['id']}/")).json()
    assert {k: v for k, v in shown.items() if k != "file_url"} == {
        k: v for k, v in over_http.items() if k != "file_url"
    }


@pytest.fixture(scope="module")
async def catalog(env: Env) -> None:
    """A second provider and image model (the flow test owns "kie"), plus a slow one to cancel."""
    code, _, err = await env.run(
        "providers",
        "add",
        "kie2",
        "--preset",
        "kie-ai",
        "--base-url",
        env.provider_url,
        "--api-key-env",
        "KIE_API_KEY",
    )
    assert code == EXIT_OK, err
    code, _, err = await env.run(
        "models", "add", "img2", "--provider", "kie2", "--type", "IMAGE", "--schema", json.dumps(IMAGE_SCHEMA)
    )
    assert code == EXIT_OK, err
    code, _, err = await env.run(
        "providers", "add", "slow", "--preset", "kie-ai", "--base-url", env.slow_provider_url,
        "--api-key-env", "KIE_API_KEY",
    )  # fmt: skip
    assert code == EXIT_OK, err
    code, _, err = await env.run(
        "models",
        "add",
        "slowimg",
        "--provider",
        "slow",
        "--type",
        "IMAGE",
        "--schema",
        json.dumps(IMAGE_SCHEMA),
    )
    assert code == EXIT_OK, err


async def test_upload_and_generate_from_a_local_image(env: Env, catalog: None, tmp_path: Path) -> None:
    box = (await env.run_json("boxes", "create", "uploads"))["id"]
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_png("cli upload"))
    uploaded = await env.run_json("upload", box, str(photo))
    assert uploaded["status"] == "COMPLETED" and uploaded["content_type"] == "image/png"

    code, out, err = await env.run(
        "generate",
        box,
        "--model",
        "img2",
        "--prompt",
        "from my photo",
        "--image",
        str(photo),
        "--wait",
        "--json",
    )
    assert code == EXIT_OK, err
    assert "uploaded" in err and json.loads(out)["status"] == "COMPLETED"


async def test_failed_generation_exits_1_and_retry_and_cancel(env: Env, catalog: None) -> None:
    box = (await env.run_json("boxes", "create", "failures"))["id"]
    code, out, err = await env.run("generate", box, "--model", "img2", "--prompt", "[fail] nope", "--wait")
    assert code == EXIT_FAILED
    assert "FAILED" in err and out == ""
    failed_id = err.split()[0]

    retried = await env.run_json("asset", "retry", failed_id)
    assert retried["id"] == failed_id and retried["attempt"] == 2

    pending = await env.run_json("generate", box, "--model", "slowimg", "--prompt", "takes forever")
    canceled = await env.run_json("asset", "cancel", pending["id"])
    assert canceled["id"] == pending["id"]

    async def status() -> str:
        return str((await env.run_json("asset", "show", pending["id"]))["status"])

    assert await eventually(status, lambda s: s == "CANCELED", timeout=30) == "CANCELED"


async def test_watch_prints_the_box_live(env: Env, catalog: None) -> None:
    box = (await env.run_json("boxes", "create", "watched"))["id"]
    out = io.StringIO()
    watcher = asyncio.create_task(run_cli(["watch", box, "--json"], environ=env.environ, stdout=out))
    try:
        asset = await env.run_json("generate", box, "--model", "img2", "--prompt", "watch me")

        def events() -> list[dict[str, Any]]:
            return [json.loads(line) for line in out.getvalue().splitlines()]

        async def seen() -> list[str]:
            return [e["status"] for e in events() if e["asset_id"] == asset["id"]]

        statuses = await eventually(seen, lambda s: "COMPLETED" in s, timeout=60)
        assert statuses[0] == "PENDING" and "PROCESSING" in statuses
        assert all(e["box_id"] == box for e in events())
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


async def test_errors_map_to_exit_codes(env: Env) -> None:
    code, _, err = await env.run("asset", "show", "ast_missing")
    assert code == EXIT_USAGE and "ast_missing" in err
    code, _, err = await env.run("boxes", "list", environ={**env.environ, "ASSETGEN_TOKEN": "wrong"})
    assert code == EXIT_UNREACHABLE and "unauthenticated" in err
    code, _, _ = await env.run("boxes", "list", environ={"ASSETGEN_URL": env.stack.grpc_address})
    assert code == EXIT_UNREACHABLE


async def test_the_installed_console_script(env: Env) -> None:
    script = Path(sys.executable).with_name("assetgen")
    process = await asyncio.create_subprocess_exec(
        str(script),
        "presets",
        "list",
        "--json",
        env={
            "ASSETGEN_URL": env.stack.grpc_address,
            "ASSETGEN_TOKEN": env.stack.token,
            "PATH": "/usr/bin:/bin",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == EXIT_OK, err
    assert "kie-ai" in [p["name"] for p in json.loads(out)["items"]]
