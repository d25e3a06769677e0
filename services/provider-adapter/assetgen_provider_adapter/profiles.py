"""Provider profiles: declarative descriptions of a provider API family, and the shipped presets.

A profile is JSON validated by ``profile.schema.json`` (every error names the exact field, as a
JSONPath such as ``$.poll.state.map.done``); its JMESPath expressions are compiled at load so a typo
fails when the preset is loaded, not on the first poll. Presets live in ``presets/<name>.json``; a
provider keeps a copy of its preset's profile so later preset changes don't alter running providers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any

import jsonschema

from assetgen_provider_adapter.ledger import Limits
from assetgen_provider_adapter.paths import JMESPathError, compile_path

__all__ = [
    "PollTiming",
    "Profile",
    "ProfileError",
    "load_presets",
    "parse_duration_ms",
    "validate_profile",
]

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}

# Polling defaults for a profile that says nothing: gentle enough for any provider.
_DEFAULT_INITIAL_MS = 2000
_DEFAULT_BACKOFF = 1.5
_DEFAULT_MAX_MS = 30_000
_DEFAULT_MIN_MS = 500
_DEFAULT_DEADLINE_MS = 30 * 60_000


class ProfileError(ValueError):
    """A profile breaks the schema or holds a malformed path; the message names every bad field."""


def parse_duration_ms(value: int | str | None, default: int) -> int:
    """Milliseconds from a profile duration (an integer of ms, or ``500ms``/``3s``/``15m``/``1h``)."""
    if value is None:
        return default
    if isinstance(value, int):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ProfileError(f"malformed duration {value!r}")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


@cache
def _validator() -> jsonschema.Draft202012Validator:
    text = resources.files("assetgen_provider_adapter").joinpath("profile.schema.json").read_text("utf-8")
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _path_fields(data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(JSONPath of the field, expression) for every JMESPath field of a schema-valid profile."""
    submit = data.get("submit", {})
    for key in ("task_id", "accept_when"):
        if key in submit:
            yield f"$.submit.{key}", submit[key]
    for name, expression in submit.get("captures", {}).items():
        yield f"$.submit.captures.{name}", expression
    poll = data.get("poll", {})
    if "path" in poll.get("state", {}):
        yield "$.poll.state.path", poll["state"]["path"]
    if "progress" in poll:
        yield "$.poll.progress", poll["progress"]
    for index, output in enumerate(data.get("result", {}).get("outputs", [])):
        if "path" in output:
            yield f"$.result.outputs[{index}].path", output["path"]
    for key, expression in data.get("error", {}).items():
        yield f"$.error.{key}", expression
    if "retry_when" in data.get("http_errors", {}):
        yield "$.http_errors.retry_when", data["http_errors"]["retry_when"]


def validate_profile(data: Any) -> None:
    """Raises :class:`ProfileError` listing every schema violation and malformed path in ``data``."""
    problems = [
        f"{error.json_path}: {error.message}"
        for error in sorted(
            _validator().iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message)
        )
    ]
    if not problems:
        for where, expression in _path_fields(data):
            try:
                compile_path(expression)
            except JMESPathError as exc:
                problems.append(f"{where}: malformed JMESPath {expression!r}: {exc}")
        captures = set(data["submit"].get("captures", {}))
        for where, request in _requests(data):
            source = request.get("url_from")
            if source is not None and source not in captures:
                problems.append(f"{where}.url_from: no submit capture named {source!r}")
    if problems:
        raise ProfileError("invalid provider profile: " + "; ".join(problems))


def _requests(data: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for section in ("poll", "result", "cancel"):
        request = data.get(section, {}).get("request")
        if request is not None:
            yield f"$.{section}.request", request


@dataclass(frozen=True)
class PollTiming:
    """How to pace polls of one provider's tasks, in milliseconds."""

    initial_delay_ms: int
    backoff: float
    max_delay_ms: int
    min_interval_ms: int
    deadline_ms: int


@dataclass(frozen=True)
class Profile:
    """A validated profile with typed accessors for what the engine reads on every call."""

    data: Mapping[str, Any]

    @classmethod
    def parse(cls, data: Any) -> Profile:
        """Validates ``data`` and wraps it; raises :class:`ProfileError`."""
        validate_profile(data)
        return cls(data=data)

    @classmethod
    def from_json(cls, text: str) -> Profile:
        """Parses and validates a profile's JSON text."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProfileError(f"profile is not JSON: {exc}") from None
        return cls.parse(data)

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def description(self) -> str:
        return str(self.data["description"])

    @property
    def base_url(self) -> str:
        return str(self.data["connection"]["base_url"])

    @property
    def submit(self) -> Mapping[str, Any]:
        return self.data["submit"]  # type: ignore[no-any-return]

    @property
    def mode(self) -> str:
        return str(self.submit.get("mode", "async"))

    @property
    def poll(self) -> Mapping[str, Any]:
        return self.data.get("poll", {})  # type: ignore[no-any-return]

    @property
    def result(self) -> Mapping[str, Any]:
        return self.data["result"]  # type: ignore[no-any-return]

    @property
    def error(self) -> Mapping[str, Any]:
        return self.data.get("error", {})  # type: ignore[no-any-return]

    @property
    def http_errors(self) -> Mapping[str, Any]:
        return self.data.get("http_errors", {})  # type: ignore[no-any-return]

    @property
    def auth(self) -> Mapping[str, Any]:
        return self.data["auth"]  # type: ignore[no-any-return]

    @property
    def default_headers(self) -> Mapping[str, str]:
        return self.data["connection"].get("default_headers", {})  # type: ignore[no-any-return]

    def timeout_seconds(self, default: float) -> float:
        """Timeout of one HTTP call: the profile's, else ``default``."""
        return default if self._timeout_ms is None else self._timeout_ms / 1000

    # Derived values are computed once per profile: the engine reads them on every call, and a
    # profile never changes (a provider's new profile is a new Profile).

    @cached_property
    def _timeout_ms(self) -> int | None:
        timeout = self.data["connection"].get("timeout")
        return None if timeout is None else parse_duration_ms(timeout, 0)

    @cached_property
    def retryable_statuses(self) -> frozenset[int]:
        """HTTP statuses that mean transient trouble."""
        return frozenset(self.http_errors.get("retryable", (408, 429, 500, 502, 503, 504)))

    @cached_property
    def limits(self) -> Limits:
        """The profile's concurrency and submit-rate limits (``max_concurrency``, ``submit_rate``)."""
        limits = self.data.get("limits", {})
        count, period = 0, 0.0
        if "submit_rate" in limits:
            number, _, window = str(limits["submit_rate"]).partition("/")
            window = window if window[:1].isdigit() else f"1{window}"
            count, period = int(number), parse_duration_ms(window, 0) / 1000
        return Limits(
            max_concurrency=int(limits.get("max_concurrency", 0)),
            submit_count=count,
            submit_period=period,
            retry_seconds=max(self.poll_timing.initial_delay_ms / 1000, 1.0),
        )

    @cached_property
    def poll_timing(self) -> PollTiming:
        """The pacing the orchestrator applies to this provider's tasks."""
        interval = self.poll.get("interval", {})
        minimum = parse_duration_ms(interval.get("min"), _DEFAULT_MIN_MS)
        minimum = max(minimum, parse_duration_ms(self.data.get("limits", {}).get("min_poll_interval"), 0))
        initial = max(parse_duration_ms(interval.get("initial"), _DEFAULT_INITIAL_MS), minimum)
        return PollTiming(
            initial_delay_ms=initial,
            backoff=float(interval.get("backoff", _DEFAULT_BACKOFF)),
            max_delay_ms=max(parse_duration_ms(interval.get("max"), _DEFAULT_MAX_MS), initial),
            min_interval_ms=minimum,
            deadline_ms=parse_duration_ms(self.poll.get("deadline"), _DEFAULT_DEADLINE_MS),
        )


@cache
def load_presets() -> dict[str, Profile]:
    """Every shipped preset by name, validated (a broken preset fails loudly at start)."""
    presets: dict[str, Profile] = {}
    folder = resources.files("assetgen_provider_adapter").joinpath("presets")
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".json"):
            continue
        try:
            profile = Profile.from_json(entry.read_text("utf-8"))
        except ProfileError as exc:
            raise ProfileError(f"preset {entry.name}: {exc}") from None
        if f"{profile.name}.json" != entry.name:
            raise ProfileError(f"preset {entry.name} is named {profile.name!r}")
        presets[profile.name] = profile
    return presets
