"""JSON Schemas of the API's messages and enums, as ``assetgen_runtime.codec`` writes them.

The OpenAPI document's ``components.schemas`` are collected here, one per message or enum an
operation reaches; a test validates the codec's output against them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from assetgen_runtime.codec import enum_json_name

__all__ = ["MessageSchemas"]

_JSON_SUFFIX = "_json"
_PARTS_SUFFIX = "_parts"
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0},
    # The codec writes 64-bit integers as JSON numbers, not strings.
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_FIXED64: {"type": "integer", "minimum": 0},
}

_JSON_OBJECT = {
    "type": ["object", "null"],
    "description": "A JSON object (stored as JSON text); null when unset.",
}
# JSON-text fields that hold more than an object, as the service that owns them checks.
_JSON_VALUES: dict[str, dict[str, Any]] = {
    "request_schema_json": {
        "type": ["object", "array", "null"],
        "items": {"type": "object"},
        "minItems": 1,
        "description": "The request body template: a JSON object, or an array of JSON objects "
        "(stored as JSON text); null when unset.",
    },
}


class MessageSchemas:
    """Collects component schemas for the messages and enums the operations reach."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {
            "Error": {
                "type": "object",
                "description": "Every error response: the message is meant for the caller.",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }

    def ref(self, descriptor: Descriptor) -> dict[str, Any]:
        """A reference to the message's component schema (added on first use); timestamps inline."""
        if descriptor.full_name == "google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}
        if descriptor.name not in self.components:
            self.components[descriptor.name] = {}  # placeholder first: messages may nest themselves
            self.components[descriptor.name] = self.message(descriptor)
        return {"$ref": f"#/components/schemas/{descriptor.name}"}

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        """A reference to the enum's component schema: its unprefixed names, or null."""
        if enum.name not in self.components:
            names = [enum_json_name(enum, value.number) for value in enum.values if value.number != 0]
            self.components[enum.name] = {
                "type": ["string", "null"],
                "enum": [*names, None],
                "description": "null when unset; the prefixed proto name is accepted on input too.",
            }
        return {"$ref": f"#/components/schemas/{enum.name}"}

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            return self.enum(field.enum_type)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type is not None
            return self.ref(field.message_type)
        return dict(_SCALARS[field.type])

    def field(self, field: FieldDescriptor) -> tuple[str, dict[str, Any]]:
        """The JSON name and schema of a field under codec's rules."""
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            value = self._single(message_type.fields_by_name["value"])
            return field.name, {"type": "object", "additionalProperties": value}
        if field.is_repeated:
            return field.name, {"type": "array", "items": self._single(field)}
        if field.type == FieldDescriptor.TYPE_STRING and field.name.endswith(_JSON_SUFFIX):
            return field.name[: -len(_JSON_SUFFIX)], dict(_JSON_VALUES.get(field.name, _JSON_OBJECT))
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return field.name, {"anyOf": [self._single(field), {"type": "null"}]}
        return field.name, self._single(field)

    def message(
        self, descriptor: Descriptor, *, skip: frozenset[str] = frozenset(), nullable: bool = False
    ) -> dict[str, Any]:
        """The object schema of a message, without the fields named in ``skip`` (path parameters).

        ``nullable`` for a request body: the codec reads ``null`` in any field as the field unset.
        """
        properties = dict(self.field(field) for field in descriptor.fields if field.name not in skip)
        for name, schema in list(properties.items()):
            # codec: a string field given an object fills its "<name>_parts" map ("api_key").
            if schema.get("type") == "string" and f"{name}{_PARTS_SUFFIX}" in properties:
                properties[name] = {"anyOf": [schema, properties[f"{name}{_PARTS_SUFFIX}"]]}
        if nullable:
            properties = {name: _or_null(schema) for name, schema in properties.items()}
        return {"type": "object", "properties": properties, "additionalProperties": False}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also allows ``null``."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return schema if "null" in kind else {**schema, "type": [*kind, "null"]}
    if {"type": "null"} in schema.get("anyOf", []):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}
