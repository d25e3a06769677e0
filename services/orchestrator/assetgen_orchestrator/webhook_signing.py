"""Standard Webhooks signing: an endpoint's secret and the signature headers of one try.

A secret is ``whsec_`` and the base64 of 32 random bytes; those bytes (not the text) are the HMAC
key, as the spec (standardwebhooks.com) and its libraries have it. A try is signed over
``"<webhook-id>.<webhook-timestamp>.<body>"``; the id stays the same on every try of a delivery, the
timestamp is the try's own, so a receiver can refuse a replayed old message by its age.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["SECRET_PREFIX", "new_secret", "signature_headers", "signing_key"]

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A new endpoint secret, ``whsec_<base64 of 32 random bytes>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: its base64 part, decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one try of ``body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
