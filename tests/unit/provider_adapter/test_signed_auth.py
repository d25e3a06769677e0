"""HS256 tokens a profile's auth signs (Kling): the RFC's compact form, checked independently with
hmac, and the cache that reuses a token until shortly before it expires.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from typing import Any

import httpx

from assetgen_provider_adapter.engine import ProviderEngine, ProviderTarget
from assetgen_provider_adapter.profile_sections import JwtSpec
from assetgen_provider_adapter.profiles import load_presets
from assetgen_provider_adapter.signed_auth import TokenCache, sign_hs256
from assetgen_runtime.http import DirectClient

KLING = JwtSpec(
    secret="{{secret_key}}",
    claims={"iss": "{{access_key}}", "exp": "{{exp}}", "nbf": "{{nbf}}"},
    ttl_s=1800,
    not_before_s=5,
    refresh_before_s=300,
)
PARTS = {"access_key": "ak-1", "secret_key": "sk-1"}


def _decode(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_signed_token_verifies_with_the_key_and_carries_the_claims() -> None:
    token = sign_hs256({"iss": "ak", "exp": 100}, "key")
    head, payload, signature = token.split(".")
    assert "=" not in token
    assert _decode(head) == {"alg": "HS256", "typ": "JWT"}
    assert _decode(payload) == {"iss": "ak", "exp": 100}
    expected = hmac.new(b"key", f"{head}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature
    assert sign_hs256({"iss": "ak", "exp": 100}, "other").split(".")[2] != signature


def test_the_rfc_7515_example_signature() -> None:
    # RFC 7515 A.1 signs a fixed header and payload; ours writes JSON compactly, so check the
    # primitive on the RFC's own signing input instead.
    key = base64.urlsafe_b64decode(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow=="
    )
    signing_input = (
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    )
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    assert (
        base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    )


def test_claims_are_rendered_with_typed_times_and_the_key_parts() -> None:
    clock = _Clock(1_000_000.7)
    token = TokenCache(clock).token(KLING, PARTS)
    head, payload, signature = token.split(".")
    assert _decode(payload) == {"iss": "ak-1", "exp": 1_000_000 + 1800, "nbf": 1_000_000 - 5}
    expected = hmac.new(b"sk-1", f"{head}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    clock = _Clock(1_000_000.0)
    cache = TokenCache(clock)
    first = cache.token(KLING, PARTS)
    clock.now += 1800 - 300 - 1  # just inside the reuse window
    assert cache.token(KLING, PARTS) == first
    clock.now += 2  # less than refresh_before left: a new token, valid for a full ttl again
    second = cache.token(KLING, PARTS)
    assert second != first
    assert _decode(second.split(".")[1])["exp"] == int(clock.now) + 1800


def test_another_credential_gets_its_own_token() -> None:
    cache = TokenCache(_Clock(1_000_000.0))
    one = cache.token(KLING, PARTS)
    other = cache.token(KLING, {**PARTS, "secret_key": "sk-2"})
    assert one != other
    assert cache.token(KLING, PARTS) == one


def test_a_forgotten_token_is_signed_anew() -> None:
    clock = _Clock(1_000_000.0)
    cache = TokenCache(clock)
    first = cache.token(KLING, PARTS)
    clock.now += 10
    cache.forget(KLING, PARTS)
    second = cache.token(KLING, PARTS)
    assert second != first and _decode(second.split(".")[1])["nbf"] == 1_000_000 + 10 - 5


async def test_a_poll_refused_with_401_drops_the_token() -> None:
    answers = [
        httpx.Response(200, json={"code": 0, "data": {"task_id": "1"}}),
        httpx.Response(401, json={"code": 1004, "message": "Authorization has expired"}),
        httpx.Response(200, json={"code": 0, "data": {"task_status": "processing"}}),
    ]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return answers[len(seen) - 1]

    clock = _Clock(1_000_000.0)
    async with DirectClient(transport=httpx.MockTransport(handler)) as client:
        engine = ProviderEngine(client, tokens=TokenCache(clock))
        target = ProviderTarget(
            name="kling", base_url="https://api.kling.test", profile=load_presets()["kling"], key_parts=PARTS
        )
        submitted = await engine.submit(target, {"prompt": "p"}, request_schema={"prompt": "{{prompt}}"})
        clock.now += 1
        with contextlib.suppress(Exception):  # a refused key is the caller's to retry
            await engine.poll(target, submitted.task_id, submitted.handle)
        polled = await engine.poll(target, submitted.task_id, submitted.handle)
    assert polled.state == "PROCESSING"
    assert seen[0] == seen[1] != seen[2], "the refused token is not sent again"


def test_the_kling_preset_defaults() -> None:
    jwt = load_presets()["kling"].auth.jwt
    assert jwt is not None
    assert (jwt.ttl_s, jwt.not_before_s, jwt.refresh_before_s) == (1800, 5, 300)


async def test_the_engine_sends_the_signed_token_and_never_the_secret() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"code": 0, "data": {"task_id": "123456789012345678"}})

    clock = _Clock(1_000_000.0)
    async with DirectClient(transport=httpx.MockTransport(handler)) as client:
        engine = ProviderEngine(client, tokens=TokenCache(clock))
        target = ProviderTarget(
            name="kling", base_url="https://api.kling.test", profile=load_presets()["kling"], key_parts=PARTS
        )
        assert "sk-1" not in repr(target)
        result = await engine.submit(target, {"prompt": "a fox"}, request_schema={"prompt": "{{prompt}}"})
        await engine.submit(target, {"prompt": "a fox"}, request_schema={"prompt": "{{prompt}}"})
    assert result.task_id == "123456789012345678"
    assert result.handle == {"submit_path": "/v1/videos/text2video"}
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0].startswith("Bearer ey")
    assert "sk-1" not in seen[0]
