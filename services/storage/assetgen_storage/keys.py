"""Object keys: ``boxes/<box>/<asset>/<unique>.<ext>``, unique per stored file, never chosen by callers."""

from __future__ import annotations

import re

from assetgen_runtime.errors import InvalidArgument
from assetgen_runtime.ids import new_id

__all__ = ["KEY_PREFIX", "asset_prefix", "check_key", "check_owner", "new_object_key"]

KEY_PREFIX = "boxes/"
_SEGMENT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
_SEGMENT = re.compile(_SEGMENT_PATTERN)
_KEY = re.compile(rf"boxes/{_SEGMENT_PATTERN}/{_SEGMENT_PATTERN}/[A-Za-z0-9_-]+\.[a-z0-9]+")


def _check_segment(name: str, value: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise InvalidArgument(
            f"{name} {value!r} must be 1-128 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return value


def check_owner(box_id: str, asset_id: str) -> None:
    """InvalidArgument unless ``box_id`` and ``asset_id`` can be key segments."""
    _check_segment("box_id", box_id)
    _check_segment("asset_id", asset_id)


def new_object_key(box_id: str, asset_id: str, extension: str) -> str:
    """A fresh key for a file of ``asset_id`` in ``box_id``; a second copy never overwrites the first."""
    box = _check_segment("box_id", box_id)
    asset = _check_segment("asset_id", asset_id)
    return f"{KEY_PREFIX}{box}/{asset}/{new_id('obj')}.{extension}"


def asset_prefix(box_id: str, asset_id: str) -> str:
    """The prefix every key of ``asset_id``'s files in ``box_id`` starts with."""
    return f"{KEY_PREFIX}{_check_segment('box_id', box_id)}/{_check_segment('asset_id', asset_id)}/"


def check_key(key: str) -> str:
    """``key`` if it has the shape this service gives keys; InvalidArgument otherwise."""
    if not _KEY.fullmatch(key):
        raise InvalidArgument(f"{key!r} is not a storage key (boxes/<box>/<asset>/<unique>.<ext>)")
    return key
