"""API keys encrypted at rest, and never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assetgen_provider_adapter.credentials import SecretBox, SecretUnreadable, load_secret_box


def test_round_trip_and_ciphertext_hides_the_key() -> None:
    box = SecretBox.from_passphrase("operator secret")
    ciphertext = box.encrypt("sk-live-123")
    assert "sk-live-123" not in ciphertext
    assert box.decrypt(ciphertext) == "sk-live-123"
    assert box.encrypt("sk-live-123") != ciphertext  # fresh IV every time


def test_the_same_passphrase_derives_the_same_key() -> None:
    ciphertext = SecretBox.from_passphrase("p").encrypt("k")
    assert SecretBox.from_passphrase("p").decrypt(ciphertext) == "k"


def test_a_different_key_cannot_read_and_says_nothing_secret() -> None:
    ciphertext = SecretBox.from_passphrase("one").encrypt("sk-live-123")
    with pytest.raises(SecretUnreadable) as error:
        SecretBox.from_passphrase("two").decrypt(ciphertext)
    assert "sk-live-123" not in str(error.value) and ciphertext not in str(error.value)


def test_repr_hides_the_key() -> None:
    assert repr(SecretBox.from_passphrase("p")) == "SecretBox(<hidden>)"


def test_without_a_secret_key_a_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_secret_box("", str(tmp_path / "data"))
    key_file = tmp_path / "data" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    content = key_file.read_bytes()
    ciphertext = first.encrypt("k")
    second = load_secret_box("", str(tmp_path / "data"))
    assert key_file.read_bytes() == content
    assert second.decrypt(ciphertext) == "k"


def test_a_secret_key_setting_wins_over_the_key_file(tmp_path: Path) -> None:
    load_secret_box("", str(tmp_path))
    ciphertext = load_secret_box("configured", str(tmp_path)).encrypt("k")
    assert SecretBox.from_passphrase("configured").decrypt(ciphertext) == "k"
    assert os.listdir(tmp_path) == ["secret.key"]
