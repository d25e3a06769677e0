"""Provider API keys encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The Fernet key is derived with HKDF-SHA256 from ``ASSETGEN_SECRET_KEY`` (any string), or, when that
is unset, generated once into ``<data_dir>/secret.key`` with mode 0600 so a single-node install keeps
working across restarts. Replicas sharing a database must share ``ASSETGEN_SECRET_KEY``.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SecretBox", "SecretUnreadable", "load_secret_box"]

_KEY_FILE = "secret.key"
_HKDF_INFO = b"assetgen provider api keys v1"


class SecretUnreadable(Exception):
    """A stored key cannot be decrypted (the secret key changed); never carries the ciphertext."""


class SecretBox:
    """Encrypts and decrypts API keys; the object's repr never shows the key."""

    def __init__(self, fernet_key: bytes) -> None:
        self._fernet = Fernet(fernet_key)

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    @classmethod
    def from_passphrase(cls, passphrase: str) -> SecretBox:
        """A box whose key is derived from an operator-chosen string."""
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            passphrase.encode("utf-8")
        )
        return cls(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        """The ciphertext, as ASCII text fit for a database column."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; raises :class:`SecretUnreadable` when the key does not match."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise SecretUnreadable(
                "a stored API key cannot be decrypted with the current secret key"
            ) from None


def _read_or_create_key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        # O_EXCL: when two processes start together, exactly one writes and both read the same key.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(Fernet.generate_key())
    return path.read_bytes().strip()


def load_secret_box(secret_key: str, data_dir: str) -> SecretBox:
    """The box for these settings: derived from ``secret_key``, else the data folder's key file."""
    if secret_key:
        return SecretBox.from_passphrase(secret_key)
    return SecretBox(_read_or_create_key_file(Path(data_dir) / _KEY_FILE))
