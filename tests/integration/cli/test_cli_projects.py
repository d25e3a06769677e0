"""``assetgen projects …`` and ``assetgen keys …`` against the real stack, the token read from a file."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assetgen_cli.main import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, run_cli
from assetgen_dev.stack import WholeStackFactory


@dataclass
class Env:
    """The CLI's environment for a running system: the admin token is in a file, not in a variable."""

    environ: dict[str, str]
    token_file: Path

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
    data_dir = tmp_path_factory.mktemp("cli-projects")
    async with whole_stack(data_dir) as system:
        token_file = data_dir / "admin-token"
        token_file.write_text(system.stack.token + "\n")
        yield Env(
            {"ASSETGEN_URL": system.stack.grpc_address, "ASSETGEN_TOKEN_FILE": str(token_file)}, token_file
        )


async def test_projects_from_creation_to_deletion(env: Env) -> None:
    created = await env.run_json("projects", "create", "media-team")
    assert created["name"] == "media-team" and created["id"]
    code, out, _ = await env.run("projects", "list")
    assert code == EXIT_OK
    names = [line.split()[1] for line in out.splitlines()]
    assert "default" in names and "media-team" in names
    assert (await env.run_json("projects", "get", "media-team"))["id"] == created["id"]
    renamed = await env.run_json("projects", "rename", created["id"], "media")
    assert renamed["name"] == "media"
    code, _, err = await env.run("projects", "create", "media")
    assert code == EXIT_USAGE and "already exists" in err
    code, _, err = await env.run("projects", "delete", "media")
    assert code == EXIT_OK and "deleted project media" in err
    code, _, err = await env.run("projects", "get", "media")
    assert code == EXIT_USAGE and "not found" in err


async def test_a_key_is_shown_once_used_from_a_file_and_revoked(env: Env, tmp_path: Path) -> None:
    await env.run_json("projects", "create", "render")
    code, out, err = await env.run(
        "keys", "create", "renderer", "--project", "render", "--scope", "read,write"
    )
    assert code == EXIT_OK, err
    key = out.strip()
    assert key.startswith("agk_") and "shown only now" in err and "read,write" in err
    listed = await env.run_json("keys", "list", "--project", "render")
    assert [item["name"] for item in listed["items"]] == ["renderer"]
    assert key not in json.dumps(listed)
    key_id = listed["items"][0]["id"]
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    as_key = {"ASSETGEN_URL": env.environ["ASSETGEN_URL"], "ASSETGEN_TOKEN_FILE": str(key_file)}
    code, out, err = await env.run("boxes", "create", "rendered", "--json", environ=as_key)
    assert code == EXIT_OK, err
    box = json.loads(out)
    assert box["project"] == listed["items"][0]["project"]
    # The key's scopes stop at write: projects are the admin's.
    code, _, err = await env.run("projects", "list", environ=as_key)
    assert code == EXIT_UNREACHABLE and "scope" in err
    code, _, err = await env.run("keys", "revoke", key_id)
    assert code == EXIT_OK and key_id in err
    code, _, err = await env.run("boxes", "list", environ=as_key)
    assert code == EXIT_UNREACHABLE and "unauthenticated" in err
    code, out, _ = await env.run("keys", "list")
    assert any(line.startswith(key_id) and "revoked" in line for line in out.splitlines())


async def test_the_token_file_option_and_its_errors(env: Env, tmp_path: Path) -> None:
    url_only = {"ASSETGEN_URL": env.environ["ASSETGEN_URL"]}
    code, _, _ = await env.run("--token-file", str(env.token_file), "projects", "list", environ=url_only)
    assert code == EXIT_OK
    code, _, err = await env.run(
        "--token-file", str(tmp_path / "missing"), "projects", "list", environ=url_only
    )
    assert code == EXIT_USAGE and "cannot read the token file" in err
    empty = tmp_path / "empty"
    empty.write_text("\n")
    code, _, err = await env.run("projects", "list", environ={**url_only, "ASSETGEN_TOKEN_FILE": str(empty)})
    assert code == EXIT_USAGE and "is empty" in err
    code, _, err = await env.run("keys", "create", "x", "--project", "default", "--scope", "root")
    assert code == EXIT_USAGE and "unknown scope" in err
