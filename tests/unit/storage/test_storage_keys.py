"""Object keys: unique, shaped boxes/<box>/<asset>/<unique>.<ext>, never taken from callers' paths."""

from __future__ import annotations

import pytest

from assetgen_runtime.errors import InvalidArgument
from assetgen_storage.keys import check_key, check_owner, new_object_key


def test_keys_have_the_documented_shape_and_are_unique() -> None:
    first = new_object_key("box_1", "ast_2", "png")
    second = new_object_key("box_1", "ast_2", "png")
    assert first != second
    prefix, box, asset, name = first.split("/")
    assert (prefix, box, asset) == ("boxes", "box_1", "ast_2")
    assert name.startswith("obj_") and name.endswith(".png")
    assert check_key(first) == first


@pytest.mark.parametrize("segment", ["", "..", "a/b", "a b", "-x", "x" * 129, "ä"])
def test_unsafe_segments_are_refused(segment: str) -> None:
    with pytest.raises(InvalidArgument, match="box_id"):
        new_object_key(segment, "ast_1", "png")
    with pytest.raises(InvalidArgument, match="asset_id"):
        check_owner("box_1", segment)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "secrets.txt",
        "boxes/a/b",
        "boxes/a/b/../c.png",
        "boxes/a/b/c/d.png",
        "other/a/b/c.png",
        "boxes/a/b/c",
    ],
)
def test_foreign_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidArgument, match="not a storage key"):
        check_key(key)
