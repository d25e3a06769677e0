"""Where the CLI takes its token from, and how the project and key commands parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from assetgen_cli import access_commands
from assetgen_cli.context import UsageError, resolve_token
from assetgen_cli.parser import build_parser


def test_the_token_comes_from_the_option_the_file_or_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\nignored\n")
    assert resolve_token("given", str(token_file), {"ASSETGEN_TOKEN": "env"}) == "given"
    assert resolve_token(None, str(token_file), {"ASSETGEN_TOKEN": "env"}) == "from-file"
    assert (
        resolve_token(None, None, {"ASSETGEN_TOKEN": "env", "ASSETGEN_TOKEN_FILE": str(token_file)}) == "env"
    )
    assert resolve_token(None, None, {"ASSETGEN_TOKEN_FILE": str(token_file)}) == "from-file"
    assert resolve_token(None, None, {}) == ""


def test_an_unreadable_or_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the token file"):
        resolve_token(None, str(tmp_path / "missing"), {})
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(UsageError, match="is empty"):
        resolve_token(None, None, {"ASSETGEN_TOKEN_FILE": str(empty)})


@pytest.mark.parametrize(
    ("argv", "func", "values"),
    [
        (["projects", "list"], access_commands.projects_list, {}),
        (["projects", "create", "team"], access_commands.projects_create, {"name": "team"}),
        (["projects", "get", "team"], access_commands.projects_get, {"project": "team"}),
        (["projects", "rename", "team", "crew"], access_commands.projects_rename, {"name": "crew"}),
        (["projects", "delete", "team"], access_commands.projects_delete, {"project": "team"}),
        (["keys", "list", "--project", "team"], access_commands.keys_list, {"project": "team"}),
        (
            ["keys", "create", "ci", "--project", "team", "--scope", "read", "--scope", "write"],
            access_commands.keys_create,
            {"scope": ["read", "write"]},
        ),
        (["keys", "revoke", "key_1"], access_commands.keys_revoke, {"id": "key_1"}),
        (["--token-file", "/t", "keys", "list"], access_commands.keys_list, {"token_file": "/t"}),
    ],
)
def test_project_and_key_commands_parse(argv: list[str], func: object, values: dict[str, object]) -> None:
    args = build_parser().parse_args(argv)
    assert args.func is func
    for name, value in values.items():
        assert getattr(args, name) == value


def test_token_and_token_file_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--token", "a", "--token-file", "b", "keys", "list"])
    assert "not allowed with" in capsys.readouterr().err
