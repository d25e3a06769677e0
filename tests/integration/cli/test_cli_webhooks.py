"""``assetgen webhooks …`` against the real stack: the secret printed once, the endpoint listed,
turned off and on, its (empty) delivery log, deleted; a private destination is a usage error."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from assetgen_cli.main import EXIT_OK, EXIT_USAGE, run_cli
from assetgen_dev.stack import WholeStackFactory

Run = tuple[int, str, str]


@pytest.fixture(scope="module")
async def environ(
    tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory
) -> AsyncIterator[dict[str, str]]:
    async with whole_stack(tmp_path_factory.mktemp("cli-webhooks")) as system:
        yield {"ASSETGEN_URL": system.stack.grpc_address, "ASSETGEN_TOKEN": system.stack.token}


async def _run(environ: dict[str, str], *argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = await run_cli(list(argv), environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def _json(environ: dict[str, str], *argv: str) -> Any:
    code, out, err = await _run(environ, *argv, "--json")
    assert code == EXIT_OK, err
    return json.loads(out)


async def test_an_endpoint_from_creation_to_deletion(environ: dict[str, str]) -> None:
    # A name that does not resolve is accepted: every delivery's connection is checked when made.
    url = "https://hooks.example.invalid/assetgen"
    code, out, err = await _run(environ, "webhooks", "create", url, "--event", "asset.completed,asset.failed")
    assert code == EXIT_OK, err
    secret = out.strip()
    assert secret.startswith("whsec_") and "\n" not in secret and "shown only now" in err
    listed = await _json(environ, "webhooks", "list")
    [endpoint] = [item for item in listed["items"] if item["url"] == url]
    assert endpoint["events"] == ["asset.completed", "asset.failed"] and endpoint["secret"] == ""
    code, out, _ = await _run(environ, "webhooks", "list")
    assert endpoint["id"] in out and secret not in out
    assert (await _json(environ, "webhooks", "disable", endpoint["id"]))["enabled"] is False
    assert (await _json(environ, "webhooks", "enable", endpoint["id"]))["enabled"] is True
    assert (await _json(environ, "webhooks", "deliveries", endpoint["id"]))["items"] == []
    code, _, err = await _run(environ, "webhooks", "delete", endpoint["id"])
    assert code == EXIT_OK and f"deleted webhook {endpoint['id']}" in err
    assert [item for item in (await _json(environ, "webhooks", "list"))["items"] if item["url"] == url] == []


async def test_a_private_destination_is_a_usage_error(environ: dict[str, str]) -> None:
    code, out, err = await _run(environ, "webhooks", "create", "http://192.168.1.10/hook")
    assert code == EXIT_USAGE and out == "" and "private" in err
