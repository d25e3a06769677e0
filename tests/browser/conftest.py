"""The web console in a real browser: Debian's Chromium driven by Playwright, against the whole system.

The system is the four services started in this process (``assetgen_dev.stack.start_stack``) on a
NATS of their own, the session's SeaweedFS and SQLite, with a fake Kie.ai that makes real PNGs and
MP4s. Chromium is the system's (``apt-get install chromium``), never one Playwright downloads; when
it is missing the tests fail and say how to install it, so CI cannot pass without running them.
Screenshots go to ``test-artifacts/console/`` (or ``$ASSETGEN_TEST_ARTIFACTS/console/``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from browser_stack import (
    DESKTOP,
    IMAGE_MODEL,
    IMAGE_SCHEMA,
    PROVIDER_KEY,
    REPO,
    VIDEO_MODEL,
    VIDEO_SCHEMA,
    Console,
    fast_polling,
    task_timing,
)
from playwright.async_api import Browser, Page, async_playwright

from assetgen_dev import stack as stack_module
from assetgen_dev.embedded import S3Server, start_nats
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs
from assetgen_dev.fake_providers.media import MediaResults
from assetgen_dev.stack import start_stack
from assetgen_gateway.settings import GatewaySettings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the web console in headless Chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's Chromium; missing, every browser test fails (CI installs it in .ci/run)."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "the browser tests need Debian's chromium on PATH: apt-get update && apt-get install -y chromium",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
async def browser(chromium_executable: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


def _model(name: str, model_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"provider": "kie", "name": name, "model_type": model_type, "request_schema": schema}


@pytest.fixture(scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> AsyncIterator[Console]:
    data_dir = tmp_path_factory.mktemp("console")
    provider = FakeKieJobs(PROVIDER_KEY, timing=task_timing, results=MediaResults(), polls_before_done=0)
    async with contextlib.AsyncExitStack() as cleanup:
        nats = start_nats(data_dir / "nats")
        cleanup.callback(nats.stop)
        await provider.start()
        cleanup.push_async_callback(provider.stop)
        # As `make run` does, the console may show media from the S3 endpoint's origin only, so the
        # tests see the strict policy let the presigned file URLs through.
        gateway_settings = functools.partial(GatewaySettings, console_media_origins=(s3_server.url,))
        with mock.patch.object(stack_module, "GatewaySettings", gateway_settings):
            stack = await start_stack(data_dir / "stack", nats_url=nats.url, s3=s3_server)
        cleanup.push_async_callback(stack.stop)
        http = httpx.AsyncClient(
            base_url=stack.http_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30
        )
        cleanup.push_async_callback(http.aclose)
        presets = (await http.get("/api/presets/")).json()["items"]
        kie = next(preset for preset in presets if preset["name"] == "kie-ai")
        provider_body = {
            "name": "kie",
            "profile": fast_polling(kie["profile"]),
            "base_url": provider.base_url,
            "api_key": PROVIDER_KEY,
        }
        for path, body in [
            ("/api/providers/", provider_body),
            ("/api/models/", _model(IMAGE_MODEL, "IMAGE", IMAGE_SCHEMA)),
            ("/api/models/", _model(VIDEO_MODEL, "VIDEO", VIDEO_SCHEMA)),
        ]:
            response = await http.post(path, json=body)
            assert response.status_code == 201, response.text
        yield Console(url=stack.http_url, token=stack.token, http=http, provider=provider, stack=stack)


@pytest.fixture
async def page(browser: Browser, console: Console) -> AsyncIterator[Page]:
    """A fresh browser context (empty session storage) at desktop size, failing on script errors."""
    context = await browser.new_context(viewport=DESKTOP, base_url=console.url)
    context.set_default_timeout(20_000)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        yield opened
    finally:
        await context.close()
    assert not errors, f"the page reported errors: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots are saved (gitignored)."""
    folder = Path(os.environ.get("ASSETGEN_TEST_ARTIFACTS", REPO / "test-artifacts")) / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
