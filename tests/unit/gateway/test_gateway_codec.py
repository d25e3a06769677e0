"""The HTTP/JSON form of API messages."""

from __future__ import annotations

import json

import pytest

from assetgen.v1 import common_pb2, gateway_pb2
from assetgen_runtime.codec import message_from_json, message_to_json
from assetgen_runtime.errors import InvalidArgument


def test_asset_json_reads_like_the_seed() -> None:
    asset = common_pb2.Asset(
        id="ast_1",
        status=common_pb2.ASSET_STATUS_COMPLETED,
        source_type=common_pb2.SOURCE_TYPE_IMG2VID,
        size_bytes=3_000_000_000,
        config_json='{"duration": 5, "ratio": "16:9"}',
    )
    body = message_to_json(asset)
    assert body["status"] == "COMPLETED"
    assert body["source_type"] == "IMG2VID"
    assert body["size_bytes"] == 3_000_000_000 and isinstance(body["size_bytes"], int)
    assert body["config"] == {"duration": 5, "ratio": "16:9"}
    assert "config_json" not in body
    assert body["created_at"] is None


def test_json_values_keep_their_types_through_a_request() -> None:
    request = message_from_json(
        gateway_pb2.CreateModelRequest(),
        {
            "provider": "kie",
            "name": "m",
            "model_type": "VIDEO",
            "request_schema": {"n": 5, "d": "5", "b": True},
        },
    )
    assert request.model_type == common_pb2.MODEL_TYPE_VIDEO
    assert json.loads(request.request_schema_json) == {"n": 5, "d": "5", "b": True}


def test_query_strings_become_typed_fields() -> None:
    request = message_from_json(
        gateway_pb2.ListAssetsRequest(), {"box_id": "b", "page_size": "10", "status": "failed"}
    )
    assert request.page_size == 10
    assert request.status == common_pb2.ASSET_STATUS_FAILED


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"page_size": "ten"}, "page_size"),
        ({"status": "DONE"}, "status"),
        ({"colour": "red"}, "unknown field 'colour'"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        message_from_json(gateway_pb2.ListAssetsRequest(), body)
    assert fragment in caught.value.message


def test_a_non_object_body_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        message_from_json(gateway_pb2.CreateBoxRequest(), ["not", "an", "object"])  # type: ignore[arg-type]
