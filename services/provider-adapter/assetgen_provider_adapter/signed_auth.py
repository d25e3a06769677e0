"""Short-lived HS256 JSON Web Tokens that a profile's auth signs per provider (Kling's API).

A profile's ``auth.jwt`` says how: the claims as a template (``{"iss": "{{access_key}}", "exp":
"{{exp}}", "nbf": "{{nbf}}"}``), the HMAC key as a template (``"{{secret_key}}"``), the lifetime and
how far back ``nbf`` reaches (clock skew). The placeholders are the credential's parts and ``iat``,
``exp`` and ``nbf`` as Unix seconds. A token is signed once and reused until shortly before it
expires, so polls cost no signing and a token never reaches the provider nearly expired.

RFC 7519 / RFC 7515 compact form, written with ``hmac`` and ``hashlib``: nothing here needs a JWT
library, and keeping it this small makes it easy to check against the RFC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from assetgen_provider_adapter.profile_sections import JwtSpec
from assetgen_provider_adapter.templates import render, render_text

__all__ = ["TokenCache", "sign_hs256"]

# Tokens kept at most; far more than providers a deployment has (a new credential replaces its own).
_MAX_TOKENS = 1024


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_hs256(claims: Mapping[str, Any], key: str, header: Mapping[str, Any] | None = None) -> str:
    """``header.payload.signature`` with HMAC-SHA256 over the first two, base64url without padding."""
    head = {"alg": "HS256", "typ": "JWT", **(header or {})}
    signing_input = f"{_b64url(_compact(head))}.{_b64url(_compact(dict(claims)))}"
    signature = hmac.new(key.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


class TokenCache:
    """Signs tokens and keeps each until ``refresh_before`` its expiry; ``clock`` gives Unix seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[float, str]] = {}

    def token(self, spec: JwtSpec, values: Mapping[str, str]) -> str:
        """A valid token for these credential ``values``; signed anew only when the last one is
        about to expire (or the credential or spec changed, which makes another cache key).
        """
        key = self._key(spec, values)
        now = self._clock()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        issued = int(now)
        times = {"iat": issued, "exp": issued + spec.ttl_s, "nbf": issued - spec.not_before_s}
        context = {**values, **times}
        claims = render(spec.claims, context)
        token = sign_hs256(claims, render_text(spec.secret, context), spec.header)
        if len(self._tokens) >= _MAX_TOKENS:
            self._tokens.clear()
        self._tokens[key] = (issued + spec.ttl_s - spec.refresh_before_s, token)
        return token

    def forget(self, spec: JwtSpec, values: Mapping[str, str]) -> None:
        """Drops the cached token of these credential ``values``: the next one is signed anew."""
        self._tokens.pop(self._key(spec, values), None)

    @staticmethod
    def _key(spec: JwtSpec, values: Mapping[str, str]) -> str:
        # A digest, so the cache's keys hold no secret in the clear.
        material = _compact([sorted(values.items()), spec.cache_identity])
        return hashlib.sha256(material).hexdigest()
