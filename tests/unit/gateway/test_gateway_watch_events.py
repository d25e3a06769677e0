"""Turning orchestrator events into AssetEvents, and the subject filters watchers subscribe with."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from assetgen.v1 import common_pb2
from assetgen_gateway.watch import asset_subject, box_subject, event_from_json, is_terminal, snapshot_event
from assetgen_runtime.codec import message_to_json
from assetgen_runtime.errors import InvalidArgument


def test_event_body_becomes_an_asset_event_with_its_sequence() -> None:
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    body = json.dumps(
        {
            "asset_id": "ast_1",
            "box_id": "box_1",
            "status": "COMPLETED",
            "step": "DONE",
            "attempt": 2,
            "progress": 1.0,
            "external_task_id": "t1",
            "file_url": "http://s3/x.png",
            "error_message": "",
            "version": 7,
            "at": at.isoformat(),
        }
    ).encode()
    event = event_from_json(body, 42)
    assert event.sequence == 42 and event.asset_id == "ast_1" and event.box_id == "box_1"
    assert event.status == common_pb2.ASSET_STATUS_COMPLETED and is_terminal(event)
    assert event.attempt == 2 and event.file_url == "http://s3/x.png"
    assert event.at.ToDatetime(dt.UTC) == at
    assert not event.snapshot
    as_json = message_to_json(event)
    assert as_json["status"] == "COMPLETED" and as_json["sequence"] == 42
    assert as_json["at"] == "2026-01-02T03:04:05Z"


def test_pending_event_without_optional_fields() -> None:
    event = event_from_json(b'{"asset_id": "a", "box_id": "b", "status": "PENDING", "progress": null}', 1)
    assert event.status == common_pb2.ASSET_STATUS_PENDING and not is_terminal(event)
    assert event.progress == 0.0 and not event.HasField("at")


def test_snapshot_event_carries_the_assets_state_and_the_stream_position() -> None:
    asset = common_pb2.Asset(
        id="ast_1", box="box_1", status=common_pb2.ASSET_STATUS_FAILED, error_message="boom", attempt=1
    )
    asset.updated_at.FromSeconds(100)
    event = snapshot_event(asset, 9)
    assert event.snapshot and event.sequence == 9 and event.error_message == "boom"
    assert event.box_id == "box_1" and event.at.seconds == 100 and is_terminal(event)


def test_subjects_filter_by_box_or_by_asset() -> None:
    assert box_subject("box_abc") == "assetgen.events.box_abc.>"
    assert asset_subject("ast_abc") == "assetgen.events.*.ast_abc"


@pytest.mark.parametrize("bad", ["", "a.b", "*", ">", "a b", "x" * 200])
def test_ids_that_would_widen_the_filter_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        box_subject(bad)
    with pytest.raises(InvalidArgument):
        asset_subject(bad)


@pytest.mark.parametrize("body", [b"{oops", b"[1, 2]", b'"text"'])
def test_an_event_body_that_is_no_json_object_is_a_value_error(body: bytes) -> None:
    # The watch skips (and logs) events that raise ValueError instead of ending the stream.
    with pytest.raises(ValueError, match=r"^event body "):
        event_from_json(body, 1)
