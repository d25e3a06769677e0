"""The JSON form of the API's messages, derived from their descriptors.

The gateway's HTTP API speaks it and the ``assetgen`` CLI prints it, so it lives here, where a
client tool may depend on it without depending on a server package. Three rules on top of
protobuf's JSON mapping keep the JSON of the Django REST API that AssetGen replaced:

- enum values drop their type prefix: ``ASSET_STATUS_PENDING`` is ``"PENDING"``; unset is ``null``;
- 64-bit integers are JSON numbers (``size_bytes``), not strings;
- a string field named ``<name>_json`` carries JSON text and appears as ``<name>`` with the real JSON
  value (``config``, ``request_schema``, ``profile``), so ``5`` stays ``5`` and never becomes ``5.0``;
- a string field ``<name>`` given a JSON object fills the map field ``<name>_parts`` instead
  (``"api_key": {"access_key": ..., "secret_key": ...}``), so a one-part value stays a plain string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from assetgen_runtime.errors import InvalidArgument

__all__ = ["enum_json_name", "message_from_json", "message_to_json"]

_JSON_SUFFIX = "_json"
_PARTS_SUFFIX = "_parts"
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _enum_prefix(enum: Any) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_json_name(enum: Any, number: int) -> str:
    """The JSON name of an enum value: its proto name without the type prefix (``PENDING``)."""
    return enum.values_by_number[number].name.removeprefix(_enum_prefix(enum))


def _scalar_to_json(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        if value == 0:
            return None
        return enum_json_name(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_json(value)
    return value


def message_to_json(message: Message) -> Any:
    """The JSON value of a message under the rules above."""
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Timestamp":
        return message.ToJsonString()  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for field in descriptor.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {key: _scalar_to_json(value_field, item) for key, item in value.items()}
        elif field.is_repeated:
            out[field.name] = [_scalar_to_json(field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = message_to_json(value) if message.HasField(field.name) else None
        elif field.type == FieldDescriptor.TYPE_STRING and field.name.endswith(_JSON_SUFFIX):
            out[field.name[: -len(_JSON_SUFFIX)]] = json.loads(value) if value else None
        elif field.type in _INT64_TYPES:
            out[field.name] = int(value)
        else:
            out[field.name] = _scalar_to_json(field, value)
    return out


def _field_value_from_json(field: Any, value: Any) -> Any:
    # protobuf's parser would read true as the enum's value 1.
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, bool):
        raise InvalidArgument(f"invalid {field.name}: {json.dumps(value)} is not a {field.enum_type.name}")
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, str):
        prefix = _enum_prefix(field.enum_type)
        name = value.upper()
        return name if name.startswith(prefix) else prefix + name
    if field.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, Mapping):
        return _dict_for(field.message_type, value)
    return value


def _dict_for(descriptor: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key)
        json_field = descriptor.fields_by_name.get(key + _JSON_SUFFIX)
        if json_field is not None and json_field.type == FieldDescriptor.TYPE_STRING and field is None:
            if value is not None:
                converted[json_field.name] = json.dumps(value)
            continue
        parts_field = descriptor.fields_by_name.get(key + _PARTS_SUFFIX)
        if parts_field is not None and isinstance(value, Mapping):
            if parts_field.name in data and data[parts_field.name] is not None:
                raise InvalidArgument(f"give {key} as an object or {parts_field.name}, not both")
            if not all(isinstance(part, str) for part in value.values()):
                raise InvalidArgument(f"every part of {key} must be a string")
            converted[parts_field.name] = dict(value)
            continue
        if field is None:
            raise InvalidArgument(f"unknown field {key!r}")
        if value is None:
            continue
        if field.is_repeated and isinstance(value, list):
            converted[key] = [_field_value_from_json(field, item) for item in value]
        else:
            converted[key] = _field_value_from_json(field, value)
    return converted


def message_from_json(message: Message, data: Mapping[str, Any]) -> Message:
    """Fills ``message`` from a JSON object (body, path and query values); bad input is InvalidArgument."""
    if not isinstance(data, Mapping):
        raise InvalidArgument("request body must be a JSON object")
    converted = _dict_for(message.DESCRIPTOR, data)
    try:
        json_format.ParseDict(converted, message)
    except json_format.ParseError as exc:
        raise InvalidArgument(_clean_parse_error(str(exc))) from None
    return message


def _clean_parse_error(text: str) -> str:
    # protobuf names the full message type; callers know fields, not types.
    return re.sub(r"Failed to parse (\w+) field: ", r"invalid \1: ", text).replace("assetgen.v1.", "")
