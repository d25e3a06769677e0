"""No NUL characters in a request's text: every string field is looked at, nested and repeated too."""

from __future__ import annotations

import pytest

from assetgen.v1 import gateway_pb2
from assetgen_gateway.request_text import check_text, refuse_nul_characters
from assetgen_runtime.errors import InvalidArgument


def test_text_without_nul_passes_unchanged() -> None:
    assert check_text("box_01 é ✓", "box_id") == "box_01 é ✓"
    message = gateway_pb2.GenerateRequest(box_id="b", model="m", prompt="p", image_urls=["u1", "u2"])
    assert refuse_nul_characters(message) is message


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (gateway_pb2.GetBoxRequest(id="a\x00b"), "id"),
        (gateway_pb2.GenerateRequest(box_id="b", prompt="p\x00"), "prompt"),
        (gateway_pb2.GenerateRequest(box_id="b", image_urls=["ok", "\x00"]), "image_urls"),
        (gateway_pb2.ListAssetsRequest(box_id="b", cursor="\x00"), "cursor"),
    ],
)
def test_a_nul_anywhere_is_refused_naming_the_field(message: object, named: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^{named} must not contain NUL characters$"):
        refuse_nul_characters(message)  # type: ignore[arg-type]


def test_json_text_fields_hold_nul_only_escaped_and_pass() -> None:
    # The codec writes JSON values as JSON text, where U+0000 is the six characters \u0000.
    assert refuse_nul_characters(gateway_pb2.GenerateRequest(config_json='{"a": "\\u0000"}'))


def test_nested_messages_are_looked_into() -> None:
    message = gateway_pb2.UploadRequest(metadata=gateway_pb2.UploadMetadata(box_id="b\x00"))
    with pytest.raises(InvalidArgument, match=r"^metadata\.box_id must not contain NUL characters$"):
        refuse_nul_characters(message)
