"""The services' event loop: uvloop by default, asyncio's own on request, anything else refused."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from assetgen_runtime.eventloop import run
from assetgen_runtime.settings import SettingsError


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_services_run_on_uvloop_by_default() -> None:
    assert issubclass(run(_loop_type()), uvloop.Loop)


def test_asyncio_runs_asyncios_own_loop() -> None:
    loop_type = run(_loop_type(), "asyncio")
    assert issubclass(loop_type, asyncio.BaseEventLoop) and not issubclass(loop_type, uvloop.Loop)


def test_an_unknown_loop_is_a_settings_error_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="ASSETGEN_EVENT_LOOP must be one of uvloop, asyncio"):
        run(_loop_type(), "trio")
