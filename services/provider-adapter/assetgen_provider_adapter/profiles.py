"""Provider profiles: declarative descriptions of a provider API family, and the shipped presets.

A profile is JSON validated by ``profile.schema.json`` (every error names the exact field, as a
JSONPath such as ``$.poll.state.map.done``), then parsed once into the typed sections of
``profile_sections`` with defaults filled and JMESPath expressions compiled, so a typo fails when the
preset is loaded, not on the first poll. Presets live in ``presets/<name>.json``; a
provider keeps a copy of its preset's profile so later preset changes don't alter running providers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from assetgen_provider_adapter.ledger import Limits
from assetgen_provider_adapter.paths import JMESPathError, compile_path
from assetgen_provider_adapter.placeholders import handle_names, profile_problems
from assetgen_provider_adapter.profile_sections import (
    AuthSpec,
    BillingSpec,
    CancelSpec,
    ConnectionSpec,
    ErrorSpec,
    HttpErrorSpec,
    PollSpec,
    PollTiming,
    ProfileError,
    ResultSpec,
    RetiredSpec,
    SubmitSpec,
    WebhookSpec,
    auth_of,
    billing_of,
    cancel_of,
    connection_of,
    error_of,
    http_errors_of,
    limits_of,
    parse_duration_ms,
    poll_of,
    poll_timing_of,
    result_of,
    retired_of,
    submit_of,
    webhook_of,
)

__all__ = [
    "PollTiming",
    "Profile",
    "ProfileError",
    "load_presets",
    "parse_duration_ms",
    "validate_profile",
]


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
    for key, expression in data.get("billing", {}).get("usage", {}).items():
        yield f"$.billing.usage.{key}", expression


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
        poll_captures = set(data.get("poll", {}).get("captures", {}))
        for where, request in _requests(data):
            source = request.get("url_from")
            is_result = where == "$.result.request"
            known = captures | poll_captures if is_result else captures
            if source is not None and source not in known:
                kind = "submit or poll capture" if is_result else "submit capture"
                problems.append(f"{where}.url_from: no {kind} named {source!r}")
            if source is None and "url" not in request:
                problems.append(f"{where}: needs url or url_from")
        for name, expression in data.get("poll", {}).get("captures", {}).items():
            try:
                compile_path(expression)
            except JMESPathError as exc:
                problems.append(f"$.poll.captures.{name}: malformed JMESPath {expression!r}: {exc}")
        problems.extend(profile_problems(data))
    if problems:
        raise ProfileError("invalid provider profile: " + "; ".join(problems))


def _requests(data: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for section in ("poll", "result", "cancel"):
        request = data.get(section, {}).get("request")
        if request is not None:
            yield f"$.{section}.request", request


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated profile parsed into typed sections (see ``profile_sections``).

    ``data`` is the profile's JSON as given, kept to store and list it; everything that drives
    behaviour is read from the typed sections. ``poll`` is None for a sync profile, ``cancel`` when
    the provider cannot cancel, and ``webhook`` until provider callbacks arrive.
    """

    data: Mapping[str, Any]
    name: str
    description: str
    connection: ConnectionSpec
    auth: AuthSpec
    submit: SubmitSpec
    poll: PollSpec | None
    result: ResultSpec
    error: ErrorSpec
    http_errors: HttpErrorSpec
    cancel: CancelSpec | None
    poll_timing: PollTiming
    limits: Limits
    webhook: WebhookSpec | None = None
    billing: BillingSpec | None = None
    retired: RetiredSpec | None = None
    handle_variables: frozenset[str] = frozenset()
    """Generation variables (and ``submit_path``) later requests use: the submit keeps them in the
    task's handle, so config variables reach every request of the task."""

    @classmethod
    def parse(cls, data: Any) -> Profile:
        """Validates ``data`` and parses it into sections; raises :class:`ProfileError`."""
        validate_profile(data)
        poll_timing = poll_timing_of(data)
        return cls(
            data=data,
            name=str(data.get("name", "inline")),
            description=str(data.get("description", "")),
            connection=connection_of(data),
            auth=auth_of(data),
            submit=submit_of(data),
            poll=poll_of(data),
            result=result_of(data),
            error=error_of(data),
            http_errors=http_errors_of(data),
            cancel=cancel_of(data),
            poll_timing=poll_timing,
            limits=limits_of(data, poll_timing),
            billing=billing_of(data),
            retired=retired_of(data),
            webhook=webhook_of(data),
            handle_variables=handle_names(data),
        )

    @classmethod
    def from_json(cls, text: str) -> Profile:
        """Parses and validates a profile's JSON text."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProfileError(f"profile is not JSON: {exc}") from None
        return cls.parse(data)

    @property
    def base_url(self) -> str:
        """The default base URL of the provider's requests."""
        return self.connection.base_url

    @property
    def mode(self) -> str:
        """``async``, ``sync`` or ``hybrid`` (see ``SubmitSpec``)."""
        return self.submit.mode

    def timeout_seconds(self, default: float) -> float:
        """Timeout of one HTTP call: the profile's, else ``default``."""
        timeout_ms = self.connection.timeout_ms
        return default if timeout_ms is None else timeout_ms / 1000


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
