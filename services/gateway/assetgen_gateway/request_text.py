"""Text the HTTP API takes must be storable: no NUL characters in any string of a request.

PostgreSQL's text can't hold U+0000, so a box id, a name or a cursor with one failed deep in the
services as an internal error; the gateway refuses it up front as the client's mistake.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from assetgen_runtime.errors import InvalidArgument

__all__ = ["check_text", "refuse_nul_characters"]

_NUL = "\x00"


def check_text(value: str, what: str) -> str:
    """``value``, or InvalidArgument naming ``what`` if it holds a NUL character."""
    if _NUL in value:
        raise InvalidArgument(f"{what} must not contain NUL characters")
    return value


def refuse_nul_characters(message: Message, prefix: str = "") -> Message:
    """``message``, or InvalidArgument naming the first string field (nested too) with a NUL in it."""
    for field, value in message.ListFields():
        name = prefix + field.name
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            for key, item in value.items():
                _check_value(entry.fields_by_name["key"], key, f"{name} key")
                _check_value(entry.fields_by_name["value"], item, f"{name}[{key!r}]")
        elif field.is_repeated:
            for item in value:
                _check_value(field, item, name)
        else:
            _check_value(field, value, name)
    return message


def _check_value(field: FieldDescriptor, value: object, name: str) -> None:
    if field.type == FieldDescriptor.TYPE_STRING and isinstance(value, str):
        check_text(value, name)
    elif field.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, Message):
        refuse_nul_characters(value, name + ".")
