"""The values the engine's parts hand each other: a provider target, an answer, a task's result."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

from assetgen_provider_adapter.profiles import Profile

__all__ = [
    "CANCELED",
    "COMPLETED",
    "FAILED",
    "MAX_TEXT",
    "PENDING",
    "PROCESSING",
    "Output",
    "ProviderAnswer",
    "ProviderTarget",
    "TaskResult",
    "as_text",
    "decode_data_uri",
]

PENDING = "PENDING"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELED = "CANCELED"

MAX_TEXT = 500
"""Longest provider text kept when a response is not the JSON the profile expects."""


@dataclass(frozen=True)
class ProviderTarget:
    """One provider as the engine needs it: its name (for messages), base URL, profile and key
    (``api_key``, or ``key_parts`` for a key of named parts).
    """

    name: str
    base_url: str
    profile: Profile
    api_key: str | None = field(default=None, repr=False)
    key_parts: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def has_key(self) -> bool:
        """Whether there is a key to send."""
        return bool(self.api_key) or bool(self.key_parts)

    def key_values(self) -> dict[str, str]:
        """The placeholders auth may use: ``secret`` and every key part by name."""
        return {"secret": self.api_key or "", **self.key_parts}


@dataclass(frozen=True)
class Output:
    """One result file: a plain URL for storage's ingest, bytes that arrived inline, or a download
    the adapter must make itself (it needs the provider's auth, or is the raw body of a request).
    """

    kind: str  # "url" | "inline" | "download"
    content_type: str = ""
    url: str = ""
    data: bytes = field(default=b"", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def needs_upload(self) -> bool:
        """Whether the adapter stores this output itself instead of handing storage a URL."""
        return self.kind != "url"


@dataclass
class TaskResult:
    """A task's normalised state after a submit or poll."""

    state: str
    task_id: str = ""
    raw_state: str = ""
    handle: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    error_message: str = ""
    error_code: str = ""
    outputs: list[Output] = field(default_factory=list)
    poll_after_ms: int = 0
    usage: dict[str, str] = field(default_factory=dict)
    """What the provider reported the task used, where the profile's ``billing.usage`` maps it."""


@dataclass
class ProviderAnswer:
    """A provider's answer, read: the body as JSON when it is JSON, else its text; ``too_large``
    when the body passed the inline cap and was dropped.
    """

    status: int
    headers: httpx.Headers
    body: Any
    text: str
    content: bytes = b""
    too_large: bool = False

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300


def as_text(value: Any) -> str:
    """A value read from a provider's JSON as text: nothing for null/false, JSON for non-strings."""
    if value is None or value is False:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode_data_uri(uri: str) -> tuple[bytes, str]:
    """(bytes, media type) of a ``data:`` URI; raises ValueError when it is malformed."""
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise ValueError("data: URI without a comma")
    media_type, _, params = header.partition(";")
    if params.split(";")[-1] == "base64":
        return base64.b64decode(payload, validate=False), media_type
    return unquote_to_bytes(payload), media_type
