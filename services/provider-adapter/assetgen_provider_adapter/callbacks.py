"""Provider callbacks: the callback URL put into a submit, the sparser polls while callbacks are
expected, and checking a callback that arrives (signature, freshness, which task).

A profile's ``webhook`` section (:class:`WebhookSpec`) says it all as data. Verification schemes:

- ``standard-webhooks`` (Replicate, OpenAI): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature`` (``v1,<base64>`` entries, space-separated): HMAC-SHA256 of
  ``id.timestamp.body`` keyed with the base64 part of the provider's ``whsec_`` secret;
- ``kie-hmac`` (Kie.ai): ``X-Webhook-Signature`` is base64 HMAC-SHA256 of ``taskId.timestamp``
  (``X-Webhook-Timestamp``) keyed with the account's webhook HMAC key;
- ``fal-ed25519`` (fal.ai): ``X-Fal-Webhook-Signature`` (hex) is an ED25519 signature of
  ``request_id\\nuser_id\\ntimestamp\\nsha256hex(body)`` by a key of the JWKS at ``jwks_url``
  (fetched through the egress guard, cached an hour);
- ``openrouter-hmac`` (OpenRouter): ``X-OpenRouter-Signature: t=<unix>,v1=<hex>``, the hex
  HMAC-SHA256 of ``<t>,<body>`` keyed with the workspace's signing secret;
- ``none`` (Luma, Kling, Seedance, MiniMax): nothing to check; the unguessable callback URL is all
  that vouches for it.

A timestamp further than the profile's tolerance (5 minutes) from now is refused, so a captured
callback cannot be replayed later. Whatever a callback says, it only makes the task be polled — and
not even that when its state is not one the profile acts on (``state.act_on``: providers that call
back on every status change). A handshake (``challenge``: MiniMax's ``{"challenge": "…"}``) is
answered with its echo and names no task.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from assetgen.v1 import provider_adapter_pb2
from assetgen_provider_adapter.errors import CallbackAwaited, SubmitOutcomeUnknown
from assetgen_provider_adapter.messages import poll_policy_of
from assetgen_provider_adapter.paths import evaluate
from assetgen_provider_adapter.profile_sections import WebhookSpec
from assetgen_provider_adapter.profiles import Profile
from assetgen_runtime.errors import Unauthenticated

__all__ = [
    "CALLBACK_MARK",
    "CallbackRefused",
    "CheckedCallback",
    "JwksCache",
    "awaiting_callback",
    "callback_policy",
    "expects_callbacks",
    "inject_callback",
    "safety_policy",
    "verify_callback",
]

CALLBACK_MARK = "assetgen_callback"
"""Key the task handle carries when the submit asked for callbacks (the handle travels with every poll)."""
_JWKS_TTL = 3600.0


class CallbackRefused(Unauthenticated):
    """A callback that does not verify: bad or missing signature, or a stale timestamp."""


def inject_callback(request: httpx.Request, spec: WebhookSpec, url: str) -> httpx.Request:
    """``request`` with the callback URL where the profile passes it (a body field or a query parameter)."""
    if spec.inject_in == "query":
        request.url = request.url.copy_add_param(spec.field, url)
        return request
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        return request  # not a JSON body: the profile cannot take a callback field there
    if not isinstance(body, dict):
        return request
    body = {**body, **spec.extra, spec.field: url}
    headers = {key: value for key, value in request.headers.items() if key.lower() != "content-length"}
    return httpx.Request(
        request.method,
        request.url,
        headers=headers,
        content=json.dumps(body, ensure_ascii=False).encode(),
        extensions=request.extensions,
    )


def expects_callbacks(handle: Mapping[str, Any]) -> bool:
    """Whether the task's submit asked the provider to call back."""
    return bool(handle.get(CALLBACK_MARK))


def awaiting_callback(
    unknown: SubmitOutcomeUnknown, profile: Profile, provider: str, callback_url: str
) -> SubmitOutcomeUnknown:
    """What a submit of unknown outcome ends with: :class:`CallbackAwaited`, named "outcome unknown
    at <provider>: …", when its request carried the callback URL (given one, and the profile takes
    it), since a provider that has the task will call back about it; else ``unknown`` as it is."""
    if not callback_url or profile.webhook is None or isinstance(unknown, CallbackAwaited):
        return unknown
    named = f"outcome unknown at {provider}"
    # The ledger's own answer to a repeat (the first call's answer lost) does not name the provider.
    message = unknown.message if unknown.message.startswith(named) else f"{named}: {unknown.message}"
    return CallbackAwaited(message)


def safety_policy(
    policy: provider_adapter_pb2.PollPolicy, spec: WebhookSpec
) -> provider_adapter_pb2.PollPolicy:
    """``policy`` with polls no more often than the safety interval (the deadline stays)."""
    sparse = provider_adapter_pb2.PollPolicy()
    sparse.CopyFrom(policy)
    floor = spec.safety_poll_ms
    sparse.initial_delay_ms = max(policy.initial_delay_ms, floor)
    sparse.max_delay_ms = max(policy.max_delay_ms, floor)
    sparse.min_interval_ms = max(policy.min_interval_ms, floor)
    return sparse


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower(), "")
    if not value:
        raise CallbackRefused(f"the callback lacks the {name} header")
    return value


def _fresh(timestamp: str, spec: WebhookSpec, now: float) -> None:
    try:
        moment = float(timestamp)
    except ValueError:
        raise CallbackRefused("the callback's timestamp is not a number") from None
    if moment > 1e11:  # milliseconds
        moment /= 1000
    if abs(now - moment) * 1000 > spec.tolerance_ms:
        raise CallbackRefused("the callback's timestamp is too old (or in the future): refused as a replay")


def _standard_webhooks(
    headers: Mapping[str, str], body: bytes, secret: str, spec: WebhookSpec, now: float
) -> None:
    message_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    _fresh(timestamp, spec, now)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except binascii.Error:
        raise CallbackRefused("the provider's webhook secret is not a whsec_ secret") from None
    expected = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    for entry in _header(headers, "webhook-signature").split():
        version, _, signature = entry.partition(",")
        try:
            given = base64.b64decode(signature)
        except binascii.Error:
            continue
        if version == "v1" and hmac.compare_digest(given, expected):
            return
    raise CallbackRefused("the callback's webhook-signature does not match")


def _kie_hmac(headers: Mapping[str, str], task_id: str, secret: str, spec: WebhookSpec, now: float) -> None:
    timestamp = _header(headers, "x-webhook-timestamp")
    _fresh(timestamp, spec, now)
    digest = hmac.new(secret.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(_header(headers, "x-webhook-signature").encode(), base64.b64encode(digest)):
        raise CallbackRefused("the callback's X-Webhook-Signature does not match")


def _openrouter_hmac(
    headers: Mapping[str, str], body: bytes, secret: str, spec: WebhookSpec, now: float
) -> None:
    fields: dict[str, list[str]] = {}
    for item in _header(headers, "x-openrouter-signature").split(","):
        name, _, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    timestamp = (fields.get("t") or [""])[0]
    _fresh(timestamp, spec, now)
    expected = hmac.new(secret.encode(), f"{timestamp},".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(given.encode(), expected.encode()) for given in fields.get("v1", [])):
        raise CallbackRefused("the callback's X-OpenRouter-Signature does not match")


async def _fal_ed25519(
    headers: Mapping[str, str], body: bytes, spec: WebhookSpec, now: float, keys: JwksCache
) -> None:
    request_id = _header(headers, "x-fal-webhook-request-id")
    user_id = _header(headers, "x-fal-webhook-user-id")
    timestamp = _header(headers, "x-fal-webhook-timestamp")
    _fresh(timestamp, spec, now)
    try:
        signature = bytes.fromhex(_header(headers, "x-fal-webhook-signature"))
    except ValueError:
        raise CallbackRefused("the callback's X-Fal-Webhook-Signature is not hex") from None
    message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    for key in await keys.keys(spec.jwks_url):
        try:
            key.verify(signature, message)
            return
        except InvalidSignature:
            continue
    raise CallbackRefused("the callback's X-Fal-Webhook-Signature matches no key of the provider's JWKS")


class JwksCache:
    """ED25519 public keys of JWKS URLs, fetched with ``fetch`` (the adapter's guarded client) and
    kept an hour."""

    def __init__(
        self, fetch: Callable[[str], Awaitable[Any]], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._cached: dict[str, tuple[float, list[Ed25519PublicKey]]] = {}

    async def keys(self, url: str) -> list[Ed25519PublicKey]:
        """The OKP/Ed25519 keys the JWKS at ``url`` lists."""
        cached = self._cached.get(url)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        document = await self._fetch(url)
        keys = []
        for jwk in (document or {}).get("keys", []) if isinstance(document, dict) else []:
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and isinstance(jwk.get("x"), str):
                raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
                keys.append(Ed25519PublicKey.from_public_bytes(raw))
        self._cached[url] = (self._clock() + _JWKS_TTL, keys)
        return keys


@dataclass(frozen=True)
class CheckedCallback:
    """What a callback that verified says."""

    task_id: str
    """The task it names ('' for none)."""
    verified: bool
    """Whether a signature vouched for it (False for schemes without one)."""
    reply: bytes = b""
    """What to answer the provider with: a handshake's echo (the callback is about no task then)."""
    passed_over: str = ""
    """Why it is not acted on (its state is not in ``state.act_on``); '' when it is."""


def _document(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


async def _check_signature(
    spec: WebhookSpec,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    task_id: str,
    keys: JwksCache,
    now: float,
) -> bool:
    if spec.verify == "none":
        return False
    if spec.verify == "fal-ed25519":
        await _fal_ed25519(headers, body, spec, now, keys)
        return True
    if not secret:
        raise CallbackRefused("the provider has no webhook secret to verify its callbacks with")
    if spec.verify == "standard-webhooks":
        _standard_webhooks(headers, body, secret, spec, now)
    elif spec.verify == "openrouter-hmac":
        _openrouter_hmac(headers, body, secret, spec, now)
    elif spec.verify == "kie-hmac":
        if not task_id:
            raise CallbackRefused("the callback names no task to check its signature against")
        _kie_hmac(headers, task_id, secret, spec, now)
    return True


async def verify_callback(
    spec: WebhookSpec,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    keys: JwksCache,
    now: float | None = None,
) -> CheckedCallback:
    """What a callback says once it verifies; CallbackRefused if it does not (``secret``: the
    provider's webhook secret, '' when it has none)."""
    now = time.time() if now is None else now
    headers = {key.lower(): value for key, value in headers.items()}
    document = _document(body)
    found = evaluate(spec.task_id, document) if document is not None else None
    task_id = str(found) if isinstance(found, str | int) and found != "" else ""
    challenge = evaluate(spec.challenge, document) if spec.challenge and document is not None else None
    if isinstance(challenge, str) and challenge and not task_id:
        # A handshake comes before any task exists and (MiniMax) carries no signature to check.
        reply = json.dumps({spec.challenge_echo: challenge}).encode()
        return CheckedCallback("", verified=False, reply=reply)
    verified = await _check_signature(spec, secret, headers, body, task_id, keys, now)
    if spec.state is not None and spec.act_on:
        state = evaluate(spec.state, document) if document is not None else None
        if not isinstance(state, str | int) or str(state) not in spec.act_on:
            return CheckedCallback(
                task_id, verified, passed_over=f"the callback says {state!r}, not a state acted on"
            )
    return CheckedCallback(task_id, verified)


def callback_policy(profile: Profile, handle: Mapping[str, Any]) -> provider_adapter_pb2.PollPolicy:
    """The poll policy of a task: the profile's, or its safety-poll variant while callbacks are expected."""
    policy = poll_policy_of(profile)
    if profile.webhook is not None and expects_callbacks(handle):
        return safety_policy(policy, profile.webhook)
    return policy
