"""Short-lived watch tokens: what a browser puts in ``?token=`` instead of an API key.

A token names one box, the project it is in, the key that asked for it and when it expires, signed
with HMAC-SHA256 under the gateway's secret (``ASSETGEN_WATCH_TOKEN_SECRET``; every replica needs the
same one). It is accepted only on that box's event stream and WebSocket, and only until it expires,
so one found in a proxy log or a browser's history is worth little.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from assetgen_runtime.errors import Unauthenticated

__all__ = ["WatchGrant", "WatchTokenSigner"]

_VERSION = "wt1"


@dataclass(frozen=True)
class WatchGrant:
    """What a valid token allows: watching ``box_id`` (of ``project``), for ``key_id``'s account."""

    box_id: str
    project: str
    key_id: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WatchTokenSigner:
    """Makes and checks watch tokens with one secret and one lifetime."""

    def __init__(self, secret: bytes, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a watch token secret is required")
        self._secret = secret
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(self, box_id: str, project: str, key_id: str) -> tuple[str, float]:
        """A token for watching ``box_id`` and the Unix time it expires."""
        expires_at = self._clock() + self._ttl
        payload = json.dumps(
            {"b": box_id, "p": project, "k": key_id, "e": round(expires_at, 3)}, separators=(",", ":")
        )
        body = f"{_VERSION}.{_b64(payload.encode())}"
        return f"{body}.{_b64(self._sign(body))}", expires_at

    def verify(self, token: str, box_id: str) -> WatchGrant:
        """The grant of a valid, unexpired token for ``box_id``; Unauthenticated for any other."""
        version, _, rest = token.partition(".")
        encoded, _, signature = rest.partition(".")
        body = f"{version}.{encoded}"
        try:
            valid = version == _VERSION and hmac.compare_digest(_unb64(signature), self._sign(body))
            claims = json.loads(_unb64(encoded)) if valid else None
            grant = (
                WatchGrant(str(claims["b"]), str(claims["p"]), str(claims["k"]), float(claims["e"]))
                if isinstance(claims, dict)
                else None
            )
        except (binascii.Error, ValueError, KeyError, TypeError):
            grant = None
        if grant is None:
            raise Unauthenticated("invalid watch token")
        if grant.expires_at <= self._clock():
            raise Unauthenticated("watch token expired; ask for a new one")
        if grant.box_id != box_id:
            raise Unauthenticated("this watch token is for another box")
        return grant

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
