"""The callback URL of an asset attempt: ``<ASSETGEN_PUBLIC_URL>/api/callbacks/<token>``.

The token names the asset and attempt and carries an HMAC of them under the orchestrator's callback
secret (``ASSETGEN_CALLBACK_SECRET``; every replica needs the same), so it cannot be guessed or
forged, needs no storage, and lets a callback for a submission whose answer was lost find its asset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = ["CallbackUrls", "parse_token"]

_PREFIX = "cb1"
_TOKEN = re.compile(r"cb1\.([a-z]{2,5}_[0-9a-z]{26})\.([0-9]{1,6})\.([A-Za-z0-9_-]{22,43})")
_MAC_BYTES = 20


def _mac(secret: bytes, asset_id: str, attempt: int) -> str:
    digest = hmac.new(secret, f"{_PREFIX}.{asset_id}.{attempt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode().rstrip("=")


def parse_token(secret: bytes, token: str) -> tuple[str, int] | None:
    """The (asset id, attempt) a token names, or None if it is malformed or not ours."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    asset_id, attempt = match.group(1), int(match.group(2))
    if not hmac.compare_digest(match.group(3), _mac(secret, asset_id, attempt)):
        return None
    return asset_id, attempt


class CallbackUrls:
    """Mints callback URLs under the gateway's public base URL ('' base: callbacks are off)."""

    def __init__(self, public_url: str, secret: bytes) -> None:
        self._base = public_url.rstrip("/")
        self.secret = secret

    @property
    def enabled(self) -> bool:
        """Whether submits carry a callback URL."""
        return bool(self._base)

    def token(self, asset_id: str, attempt: int) -> str:
        """The token naming an asset attempt."""
        return f"{_PREFIX}.{asset_id}.{attempt}.{_mac(self.secret, asset_id, attempt)}"

    def url(self, asset_id: str, attempt: int) -> str:
        """The callback URL of an asset attempt; '' when callbacks are off."""
        if not self._base:
            return ""
        return f"{self._base}/api/callbacks/{self.token(asset_id, attempt)}"
