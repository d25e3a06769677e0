"""Provider callbacks: the URL put into a submit, the sparse policy while callbacks are expected, and
each verification scheme — accepted when signed right and fresh, refused otherwise."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from assetgen.v1 import provider_adapter_pb2
from assetgen_dev.calling_back import FalKeys, fal_headers, kie_headers, openrouter_headers
from assetgen_provider_adapter.callbacks import (
    CallbackRefused,
    CheckedCallback,
    JwksCache,
    awaiting_callback,
    callback_policy,
    inject_callback,
    safety_policy,
    verify_callback,
)
from assetgen_provider_adapter.errors import CallbackAwaited, SubmitOutcomeUnknown
from assetgen_provider_adapter.profiles import load_presets

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _spec(preset: str) -> Any:
    spec = load_presets()[preset].webhook
    assert spec is not None
    return spec


def _keys(document: dict[str, Any] | None = None) -> JwksCache:
    async def fetch(url: str) -> Any:
        return document or {"keys": []}

    return JwksCache(fetch)


def test_the_callback_url_goes_where_the_profile_says() -> None:
    request = httpx.Request("POST", "https://api.example/v1/predictions", json={"input": {"prompt": "x"}})
    injected = inject_callback(request, _spec("replicate"), "https://us.example/api/callbacks/t")
    body = json.loads(injected.content)
    assert body == {
        "input": {"prompt": "x"},
        "webhook": "https://us.example/api/callbacks/t",
        "webhook_events_filter": ["completed"],
    }
    assert int(injected.headers["content-length"]) == len(injected.content)
    queued = inject_callback(
        httpx.Request("POST", "https://queue.fal.run/m", json={}), _spec("fal"), "https://u/cb"
    )
    assert queued.url.params["fal_webhook"] == "https://u/cb"


def test_an_unknown_outcome_awaits_the_callback_only_when_the_submit_carried_its_url() -> None:
    kie, plain = load_presets()["kie-ai"], load_presets()["openai-images"]
    lost = SubmitOutcomeUnknown("outcome unknown at kie: provider kie answered the submission with HTTP 502")
    awaited = awaiting_callback(lost, kie, "kie", "https://us.example/api/callbacks/t")
    assert isinstance(awaited, CallbackAwaited) and awaited.message == lost.message
    assert awaited.reason == "OUTCOME_UNKNOWN_CALLBACK_AWAITED"
    assert awaiting_callback(lost, kie, "kie", "") is lost  # no ASSETGEN_PUBLIC_URL: no URL was sent
    assert awaiting_callback(lost, plain, "openai", "https://us.example/api/callbacks/t") is lost
    repeat = SubmitOutcomeUnknown("submission of asset ast_x attempt 1 was sent at … but its answer was lost")
    named = awaiting_callback(repeat, kie, "kie", "https://us.example/api/callbacks/t")
    assert named.message == f"outcome unknown at kie: {repeat.message}"


def test_polls_are_sparse_only_while_callbacks_are_expected() -> None:
    profile = load_presets()["kie-ai"]
    plain = callback_policy(profile, {})
    sparse = callback_policy(profile, {"assetgen_callback": 1})
    assert plain.min_interval_ms < 300_000
    assert (
        sparse.min_interval_ms == sparse.initial_delay_ms == 300_000
        and sparse.deadline_ms == plain.deadline_ms
    )
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=600_000, max_delay_ms=900_000)
    assert safety_policy(policy, _spec("kie-ai")).initial_delay_ms == 600_000


async def test_kie_hmac() -> None:
    spec, body = _spec("kie-ai"), json.dumps({"code": 200, "data": {"taskId": "task_1"}}).encode()
    assert await verify_callback(
        spec, "key", kie_headers("key", "task_1"), body, keys=_keys()
    ) == CheckedCallback("task_1", True)
    for headers in (kie_headers("wrong", "task_1"), kie_headers("key", "task_2"), {}):
        with pytest.raises(CallbackRefused):
            await verify_callback(spec, "key", headers, body, keys=_keys())
    with pytest.raises(CallbackRefused, match="too old"):
        await verify_callback(
            spec, "key", kie_headers("key", "task_1", int(time.time()) - 301), body, keys=_keys()
        )
    with pytest.raises(CallbackRefused, match="no webhook secret"):
        await verify_callback(spec, "", kie_headers("key", "task_1"), body, keys=_keys())


async def test_standard_webhooks_signed_by_the_reference_library() -> None:
    spec, body = _spec("replicate"), json.dumps({"id": "pred_1", "status": "succeeded"}).encode()
    now = dt.datetime.now(dt.UTC)
    signature = Webhook(SECRET).sign("msg_1", now, body.decode())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert await verify_callback(spec, SECRET, headers, body, keys=_keys()) == CheckedCallback("pred_1", True)
    with pytest.raises(CallbackRefused):
        await verify_callback(spec, SECRET, headers, body + b" ", keys=_keys())
    with pytest.raises(CallbackRefused):
        await verify_callback(spec, SECRET, {**headers, "webhook-id": "msg_2"}, body, keys=_keys())
    old = now - dt.timedelta(minutes=6)
    stale = {
        **headers,
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": Webhook(SECRET).sign("msg_1", old, body.decode()),
    }
    with pytest.raises(CallbackRefused, match="too old"):
        await verify_callback(spec, SECRET, stale, body, keys=_keys())


async def test_fal_ed25519_against_the_jwks() -> None:
    spec, keys = _spec("fal"), FalKeys()
    body = json.dumps({"request_id": "req_1", "status": "OK"}).encode()
    cache = _keys(keys.jwks())
    assert await verify_callback(
        spec, "", fal_headers(keys, "req_1", body), body, keys=cache
    ) == CheckedCallback("req_1", True)
    with pytest.raises(CallbackRefused, match="matches no key"):
        await verify_callback(spec, "", fal_headers(FalKeys(), "req_1", body), body, keys=cache)
    with pytest.raises(CallbackRefused, match="matches no key"):
        await verify_callback(spec, "", fal_headers(keys, "req_1", body), body + b"x", keys=cache)


async def test_luma_callbacks_carry_no_signature_and_only_name_their_task() -> None:
    body = json.dumps({"id": "gen_1", "state": "completed"}).encode()
    assert await verify_callback(_spec("luma"), "", {}, body, keys=_keys()) == CheckedCallback("gen_1", False)


async def test_kling_and_ark_callbacks_are_acted_on_only_in_terminal_states() -> None:
    kling, ark = _spec("kling"), _spec("seedance-ark")
    for state, passed in (("submitted", True), ("processing", True), ("succeed", False), ("failed", False)):
        # Kling's callback is the bare task object: no code/data envelope as in its poll answer.
        body = json.dumps({"task_id": "867283741759111202", "task_status": state}).encode()
        checked = await verify_callback(kling, "", {}, body, keys=_keys())
        assert checked.task_id == "867283741759111202" and not checked.verified
        assert bool(checked.passed_over) is passed, state
    running = await verify_callback(ark, "", {}, b'{"id": "cgt-1", "status": "running"}', keys=_keys())
    assert running.passed_over == "the callback says 'running', not a state acted on"
    for state in ("succeeded", "failed", "expired", "cancelled"):
        body = json.dumps({"id": "cgt-1", "status": state}).encode()
        assert await verify_callback(ark, "", {}, body, keys=_keys()) == CheckedCallback("cgt-1", False)
    stateless = await verify_callback(kling, "", {}, b'{"task_id": "1"}', keys=_keys())
    assert stateless.passed_over


async def test_minimax_challenge_is_echoed_and_lowercase_pushes_are_acted_on() -> None:
    spec = _spec("minimax")
    challenge = await verify_callback(spec, "", {}, b'{"challenge": "c-123"}', keys=_keys())
    assert challenge.task_id == "" and json.loads(challenge.reply) == {"challenge": "c-123"}
    done = json.dumps({"task_id": "106916112212032", "status": "success", "file_id": "1"}).encode()
    assert await verify_callback(spec, "", {}, done, keys=_keys()) == CheckedCallback(
        "106916112212032", False
    )
    for state in ("processing", "Success"):  # the poll's capitalised states are not the callback's
        body = json.dumps({"task_id": "1", "status": state}).encode()
        assert (await verify_callback(spec, "", {}, body, keys=_keys())).passed_over
    assert not (await verify_callback(_spec("kling"), "", {}, b'{"challenge": "c"}', keys=_keys())).reply


async def test_openrouter_hmac_over_timestamp_comma_body() -> None:
    spec = _spec("openrouter-video")
    body = json.dumps({"type": "video.generation.completed", "data": {"id": "job-1", "status": "completed"}})
    raw = body.encode()
    headers = openrouter_headers("or-secret", raw)
    assert await verify_callback(spec, "or-secret", headers, raw, keys=_keys()) == CheckedCallback(
        "job-1", True
    )
    for bad in (
        openrouter_headers("not-the-secret", raw),
        {**headers, "X-OpenRouter-Signature": headers["X-OpenRouter-Signature"].replace("t=", "t=1")},
        {},
    ):
        with pytest.raises(CallbackRefused):
            await verify_callback(spec, "or-secret", bad, raw, keys=_keys())
    with pytest.raises(CallbackRefused):
        await verify_callback(spec, "or-secret", headers, raw + b" ", keys=_keys())
    with pytest.raises(CallbackRefused, match="too old"):
        stale = openrouter_headers("or-secret", raw, int(time.time()) - 400)
        await verify_callback(spec, "or-secret", stale, raw, keys=_keys())
    with pytest.raises(CallbackRefused, match="no webhook secret"):
        await verify_callback(spec, "", headers, raw, keys=_keys())
