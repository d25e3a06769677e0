"""API keys referenced from the environment or a secrets folder, instead of stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from assetgen_provider_adapter.credentials import KeyReferences
from assetgen_runtime.errors import FailedPrecondition, InvalidArgument


def test_reads_an_allowed_environment_variable(tmp_path: Path) -> None:
    refs = KeyReferences({"ASSETGEN_PROVIDER_KEY_FAL": " fal-key\n"}, str(tmp_path))
    assert refs.read("env:ASSETGEN_PROVIDER_KEY_FAL") == "fal-key"


def test_reads_a_secret_file_again_after_rotation(tmp_path: Path) -> None:
    (tmp_path / "runway").write_text("key-1\n")
    refs = KeyReferences({}, str(tmp_path))
    assert refs.read("file:runway") == "key-1"
    (tmp_path / "runway").write_text("key-2\n")
    assert refs.read("file:runway") == "key-2"


@pytest.mark.parametrize(
    "reference", ["env:HOME", "env:ASSETGEN_SECRET_KEY", "file:../secret.key", "file:/etc/passwd", "x:y", ""]
)
def test_refuses_references_outside_the_allowed_places(tmp_path: Path, reference: str) -> None:
    with pytest.raises(InvalidArgument):
        KeyReferences.check(reference)


def test_a_missing_key_is_a_failed_precondition_naming_only_the_reference(tmp_path: Path) -> None:
    refs = KeyReferences({}, str(tmp_path))
    with pytest.raises(FailedPrecondition, match="ASSETGEN_PROVIDER_KEY_GONE"):
        refs.read("env:ASSETGEN_PROVIDER_KEY_GONE")
    with pytest.raises(FailedPrecondition):
        refs.read("file:absent")
    assert "secrets_dir" in repr(refs)
