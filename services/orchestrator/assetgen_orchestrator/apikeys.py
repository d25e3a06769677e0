"""The API key format: ``agk_<key id>_<secret>``, stored as the SHA-256 of the secret only.

The key id (``key_…``) names the key in lists and audit lines; the secret is 32 random bytes in hex,
shown once when the key is made. A presented key is looked up by its id and its secret compared in
constant time with the stored hash, so a database dump holds no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from assetgen_runtime.ids import new_id

__all__ = ["KEY_PREFIX", "mint_key", "parse_key", "secret_hash", "secret_matches"]

KEY_PREFIX = "agk_"
_SECRET_BYTES = 32


def secret_hash(secret: str) -> str:
    """The hex SHA-256 stored for a secret (random and long, so no slow hash is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_key() -> tuple[str, str, str]:
    """A new key: (key id, the whole key to hand out once, the hash to store)."""
    key_id = new_id("key")
    secret = secrets.token_hex(_SECRET_BYTES)
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}", secret_hash(secret)


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a key in our format, or None for anything else."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, separator, secret = key[len(KEY_PREFIX) :].rpartition("_")
    if not separator or not key_id.startswith("key_") or len(secret) != 2 * _SECRET_BYTES:
        return None
    return key_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(secret_hash(secret).encode(), stored_hash.encode())
