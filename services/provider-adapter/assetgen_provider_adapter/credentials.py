"""Provider API keys: encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256), or referenced.

A provider may instead name where its key lives: ``env:ASSETGEN_PROVIDER_KEY_<NAME>`` (an environment
variable of the provider-adapter; only that prefix, so a reference can never reach the service's own
secrets) or ``file:<name>`` (a file in ``ASSETGEN_PROVIDER_SECRETS_DIR``, e.g. a mounted Kubernetes
Secret, re-read so rotation needs no restart). Nothing but the reference is stored.

A key may have named parts (Kling's ``access_key`` and ``secret_key``): they are sealed together as
one ciphertext (:func:`seal_parts`), so a stored key is one value whatever its shape, and profiles
use the parts by name in their auth (``{{access_key}}``).

The Fernet key is derived with HKDF-SHA256 from ``ASSETGEN_SECRET_KEY`` (any string), or, when that
is unset, generated once into ``<data_dir>/secret.key`` with mode 0600 so a single-node install keeps
working across restarts. Replicas sharing a database must share ``ASSETGEN_SECRET_KEY``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from assetgen_runtime.errors import FailedPrecondition, InvalidArgument

__all__ = [
    "ENV_PREFIX",
    "RESERVED_NAMES",
    "Credential",
    "KeyReferences",
    "SecretBox",
    "SecretUnreadable",
    "check_parts",
    "load_secret_box",
    "open_credential",
    "seal_parts",
]

ENV_PREFIX = "ASSETGEN_PROVIDER_KEY_"
_ENV_NAME = re.compile(r"^ASSETGEN_PROVIDER_KEY_[A-Z0-9_]+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_PART_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_PARTS = 8
# A sealed key of parts starts with this; a plain key never does in practice (it is no API key shape).
_PARTS_MARK = "assetgen-key-parts:v1:"

RESERVED_NAMES = frozenset({"secret", "jwt", "task_id", "iat", "exp", "nbf", "submit_path"})
"""Names auth templates and requests give their own meaning, so no key part may take them."""

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


@dataclass(frozen=True)
class Credential:
    """A provider's key as requests use it: ``secret`` (a one-part key) or named ``parts``."""

    secret: str | None = field(default=None, repr=False)
    parts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def __bool__(self) -> bool:
        return bool(self.secret) or bool(self.parts)

    def values(self) -> dict[str, str]:
        """The placeholders an auth template may use: ``secret`` and every part by name."""
        return {"secret": self.secret or "", **self.parts}


def check_parts(parts: Mapping[str, str]) -> dict[str, str]:
    """The parts of a multi-part key, checked; InvalidArgument names what is wrong (never a value)."""
    if len(parts) > _MAX_PARTS:
        raise InvalidArgument(f"an API key has at most {_MAX_PARTS} parts")
    checked: dict[str, str] = {}
    for name, value in parts.items():
        if not _PART_NAME.match(name) or name in RESERVED_NAMES:
            raise InvalidArgument(
                f"API key part name {name!r} must be lower case letters, digits and _ "
                f"(not {', '.join(sorted(RESERVED_NAMES))})"
            )
        if not isinstance(value, str) or not value.strip():
            raise InvalidArgument(f"API key part {name!r} is empty")
        checked[name] = value.strip()
    return checked


def seal_parts(parts: Mapping[str, str]) -> str:
    """The plaintext a multi-part key is encrypted as (one ciphertext for the whole key)."""
    return _PARTS_MARK + json.dumps(dict(parts), separators=(",", ":"), sort_keys=True)


def open_credential(plaintext: str) -> Credential:
    """The credential a decrypted (or referenced) key stands for."""
    if plaintext.startswith(_PARTS_MARK):
        return Credential(parts=MappingProxyType(json.loads(plaintext[len(_PARTS_MARK) :])))
    return Credential(secret=plaintext)
