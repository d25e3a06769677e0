"""Our Standard Webhooks signatures verify with the spec's own library; the retry schedule parses."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook

from assetgen_orchestrator.webhook_policy import (
    DEFAULT_RETRY_SCHEDULE,
    event_type,
    next_retry_delay,
    parse_retry_schedule,
)
from assetgen_orchestrator.webhook_signing import new_secret, signature_headers, signing_key
from assetgen_runtime.settings import SettingsError


def test_a_signature_verifies_with_the_standard_webhooks_library() -> None:
    secret = new_secret()
    body = b'{"type":"asset.completed","data":{"id":"ast_1"}}'
    headers = signature_headers(secret, "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "asset.completed", "data": {"id": "ast_1"}}
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Webhook(secret).verify(body + b" ", headers)


def test_the_key_is_the_secrets_base64_part_decoded() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(signing_key(secret)) == 32
    assert base64.b64encode(signing_key(secret)).decode() == secret.removeprefix("whsec_")
    assert new_secret() != secret


def test_the_default_schedule_is_the_standard_one() -> None:
    assert parse_retry_schedule(DEFAULT_RETRY_SCHEDULE) == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert parse_retry_schedule("1s, 2 ,500ms") == (1, 2, 0.5)
    with pytest.raises(SettingsError, match="ASSETGEN_WEBHOOK_RETRY_SCHEDULE"):
        parse_retry_schedule("5s,soon")


def test_retries_follow_the_schedule_then_stop() -> None:
    schedule = (1.0, 2.0, 4.0)
    assert [next_retry_delay(schedule, tries) for tries in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, None]


def test_event_types_are_the_statuses_an_asset_enters_after_pending() -> None:
    assert [event_type(s) for s in ("PROCESSING", "COMPLETED", "FAILED", "CANCELED", "PENDING")] == [
        "asset.processing",
        "asset.completed",
        "asset.failed",
        "asset.canceled",
        "",
    ]
