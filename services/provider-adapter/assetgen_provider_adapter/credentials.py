"""Provider API keys: encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256), or referenced.

A provider may instead name where its key lives: ``env:ASSETGEN_PROVIDER_KEY_<NAME>`` (an environment
variable of the provider-adapter; only that prefix, so a reference can never reach the service's own
secrets) or ``file:<name>`` (a file in ``ASSETGEN_PROVIDER_SECRETS_DIR``, e.g. a mounted Kubernetes
Secret, re-read so rotation needs no restart). Nothing but the reference is stored.

The Fernet key is derived with HKDF-SHA256 from ``ASSETGEN_SECRET_KEY`` (any string), or, when that
is unset, generated once into ``<data_dir>/secret.key`` with mode 0600 so a single-node install keeps
working across restarts. Replicas sharing a database must share ``ASSETGEN_SECRET_KEY``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from assetgen_runtime.errors import FailedPrecondition, InvalidArgument

__all__ = ["ENV_PREFIX", "KeyReferences", "SecretBox", "SecretUnreadable", "load_secret_box"]

ENV_PREFIX = "ASSETGEN_PROVIDER_KEY_"
_ENV_NAME = re.compile(r"^ASSETGEN_PROVIDER_KEY_[A-Z0-9_]+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

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


class KeyReferences:
    """Checks and reads ``env:``/``file:`` API key references; never logs or returns a value."""

    def __init__(self, environ: Mapping[str, str], secrets_dir: str) -> None:
        self._environ = environ
        self._dir = Path(secrets_dir)

    def __repr__(self) -> str:
        return f"KeyReferences(secrets_dir={str(self._dir)!r})"

    @staticmethod
    def check(reference: str) -> str:
        """The reference, stripped, if well formed; InvalidArgument otherwise."""
        reference = reference.strip()
        kind, _, name = reference.partition(":")
        if kind == "env" and _ENV_NAME.match(name):
            return reference
        if kind == "file" and _FILE_NAME.match(name):
            return reference
        raise InvalidArgument(
            f"api_key_ref must be env:{ENV_PREFIX}<NAME> (upper case, digits, _) or file:<name> "
            "(a file name in the provider-adapter's secrets folder)"
        )

    def read(self, reference: str) -> str:
        """The key a reference points at; FailedPrecondition when it is missing or empty."""
        kind, _, name = self.check(reference).partition(":")
        if kind == "env":
            value = self._environ.get(name, "")
        else:
            try:
                value = (self._dir / name).read_text("utf-8")
            except OSError:
                value = ""
        value = value.strip()
        if not value:
            raise FailedPrecondition(f"the API key referenced by {reference!r} is missing or empty")
        return value
