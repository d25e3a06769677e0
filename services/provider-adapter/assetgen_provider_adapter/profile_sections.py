"""The typed sections of a provider profile: what the engine reads, parsed once, defaults filled.

Each section is a frozen dataclass built from a schema-valid profile (``profiles.validate_profile``
runs first), with every JMESPath expression compiled and every default the schema describes filled
in, so code that uses a profile reads attributes and never repeats a default.

Sections also read by their JSON field names (``profile.submit["request"]["url"]``), so code and
tests written against the profile's JSON say the same thing either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from assetgen_provider_adapter.ledger import Limits
from assetgen_provider_adapter.paths import ParsedResult, compile_path

__all__ = [
    "AuthSpec",
    "BillingSpec",
    "BodySpec",
    "CancelSpec",
    "ConnectionSpec",
    "ErrorSpec",
    "HttpErrorSpec",
    "JwtSpec",
    "OutputSpec",
    "PollSpec",
    "PollTiming",
    "ProfileError",
    "RequestSpec",
    "ResultSpec",
    "RetiredSpec",
    "StateSpec",
    "SubmitSpec",
    "WebhookSpec",
    "auth_of",
    "billing_of",
    "cancel_of",
    "connection_of",
    "error_of",
    "http_errors_of",
    "limits_of",
    "parse_duration_ms",
    "poll_of",
    "poll_timing_of",
    "result_of",
    "retired_of",
    "submit_of",
    "webhook_of",
]

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}

# Polling defaults for a profile that says nothing: gentle enough for any provider.
_DEFAULT_INITIAL_MS = 2000
_DEFAULT_BACKOFF = 1.5
_DEFAULT_MAX_MS = 30_000
_DEFAULT_MIN_MS = 500
_DEFAULT_DEADLINE_MS = 30 * 60_000

_DEFAULT_RETRYABLE = (408, 429, 500, 502, 503, 504)
_DEFAULT_JWT_TTL_MS = 30 * 60_000

_EMPTY: Mapping[str, str] = MappingProxyType({})


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


class _ByFieldName:
    """Lets a section be read by its JSON field name as well as by attribute."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


def _path(expression: str | None) -> ParsedResult | None:
    return None if expression is None else compile_path(expression)


def _strings(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping)) if mapping else _EMPTY


@dataclass(frozen=True, slots=True)
class BodySpec(_ByFieldName):
    """A request body: ``json`` (the template serialised), ``multipart`` (fields plus files) or ``none``.

    ``has_template`` is False when the profile gives none: a submit then uses the model's template.
    """

    type: str = "none"
    template: Any = None
    has_template: bool = False
    files: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class RequestSpec(_ByFieldName):
    """One HTTP request a profile describes; ``url`` is empty when ``url_from`` names a capture."""

    method: str
    url: str = ""
    url_from: str = ""
    query: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    accept: str = ""
    raw_path_vars: tuple[str, ...] = ()
    body: BodySpec = BodySpec()


def _request(data: Mapping[str, Any]) -> RequestSpec:
    body = data.get("body", {})
    return RequestSpec(
        method=data["method"],
        url=data.get("url", ""),
        url_from=data.get("url_from", ""),
        query=_strings(data.get("query")),
        headers=_strings(data.get("headers")),
        accept=data.get("accept", ""),
        raw_path_vars=tuple(data.get("raw_path_vars", ())),
        body=BodySpec(
            type=body.get("type", "none"),
            template=body.get("template"),
            has_template="template" in body,
            files=_strings(body.get("files")),
        ),
    )


@dataclass(frozen=True, slots=True)
class ConnectionSpec(_ByFieldName):
    """Where the provider lives; ``timeout_ms`` is None when the adapter's default applies."""

    base_url: str
    default_headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    timeout_ms: int | None = None


def connection_of(data: Mapping[str, Any]) -> ConnectionSpec:
    """The connection; an inline profile may leave ``base_url`` to the provider's own."""
    connection = data.get("connection", {})
    timeout = connection.get("timeout")
    return ConnectionSpec(
        base_url=str(connection.get("base_url", "")),
        default_headers=_strings(connection.get("default_headers")),
        timeout_ms=None if timeout is None else parse_duration_ms(timeout, 0),
    )


@dataclass(frozen=True, slots=True)
class JwtSpec(_ByFieldName):
    """A token the auth signs (HS256): claims and key as templates over the credential's parts and
    ``iat``/``exp``/``nbf``; reused until ``refresh_before_s`` before it expires.
    """

    secret: str
    claims: Any
    ttl_s: int
    not_before_s: int = 0
    refresh_before_s: int = 0
    header: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def cache_identity(self) -> str:
        """What tells two specs' tokens apart (their templates and timing)."""
        return json.dumps([self.secret, self.claims, self.ttl_s, self.not_before_s, dict(self.header)])


def _jwt(data: Mapping[str, Any] | None) -> JwtSpec | None:
    if data is None:
        return None
    ttl_s = parse_duration_ms(data.get("ttl"), _DEFAULT_JWT_TTL_MS) // 1000
    # Refreshed with a fifth of its life (at most 5 minutes) left, so none reaches the provider
    # about to expire however slow the request.
    default_refresh_ms = min(ttl_s * 200, 300_000)
    return JwtSpec(
        secret=data["secret"],
        claims=data["claims"],
        ttl_s=ttl_s,
        not_before_s=parse_duration_ms(data.get("not_before"), 0) // 1000,
        refresh_before_s=parse_duration_ms(data.get("refresh_before"), default_refresh_ms) // 1000,
        header=_strings(data.get("header")),
    )


@dataclass(frozen=True, slots=True)
class AuthSpec(_ByFieldName):
    """Where the API key goes (``header``, ``query`` or ``none``) and the extra hosts that may get it.

    ``template`` may use ``{{secret}}`` (a one-part key), the parts of a multi-part key by name, and
    ``{{jwt}}`` when ``jwt`` says how to sign one.
    """

    placement: str
    name: str = ""
    template: str = ""
    hosts: frozenset[str] = frozenset()
    jwt: JwtSpec | None = None


def auth_of(data: Mapping[str, Any]) -> AuthSpec:
    auth = data["auth"]
    return AuthSpec(
        placement=auth["in"],
        name=auth.get("name", ""),
        template=auth.get("template", ""),
        hosts=frozenset(host.lower() for host in auth.get("hosts", ())),
        jwt=_jwt(auth.get("jwt")),
    )


@dataclass(frozen=True, slots=True)
class SubmitSpec(_ByFieldName):
    """The submit request and how to read its answer; ``mode`` is ``async``, ``sync`` or ``hybrid``."""

    request: RequestSpec
    mode: str = "async"
    task_id: ParsedResult | None = None
    captures: tuple[tuple[str, ParsedResult], ...] = ()
    accept_when: ParsedResult | None = None
    idempotency_header: str = ""


def submit_of(data: Mapping[str, Any]) -> SubmitSpec:
    submit = data["submit"]
    return SubmitSpec(
        request=_request(submit["request"]),
        mode=str(submit.get("mode", "async")),
        task_id=_path(submit.get("task_id")),
        captures=tuple((name, compile_path(path)) for name, path in submit.get("captures", {}).items()),
        accept_when=_path(submit.get("accept_when")),
        idempotency_header=str(submit.get("idempotency_header", "")),
    )


@dataclass(frozen=True, slots=True)
class StateSpec(_ByFieldName):
    """How a status answer maps to a task state: from the body at ``path`` or from the HTTP status."""

    map: Mapping[str, str]
    from_http_status: bool = False
    path: ParsedResult | None = None
    unknown: str = "PROCESSING"
    messages: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class PollSpec(_ByFieldName):
    """The status request, its state mapping, progress, the provider's next-poll hint header and the
    values the result request needs from the answer that says COMPLETED (``captures``)."""

    request: RequestSpec
    state: StateSpec
    progress: ParsedResult | None = None
    honor_header: str = ""
    captures: tuple[tuple[str, ParsedResult], ...] = ()


def poll_of(data: Mapping[str, Any]) -> PollSpec | None:
    """The poll section; None for a sync profile that has none."""
    poll = data.get("poll")
    if poll is None:
        return None
    state = poll["state"]
    return PollSpec(
        request=_request(poll["request"]),
        state=StateSpec(
            map=_strings(state["map"]),
            from_http_status=state.get("source", "body") == "http_status",
            path=_path(state.get("path")),
            unknown=state.get("unknown", "PROCESSING"),
            messages=_strings(state.get("messages")),
        ),
        progress=_path(poll.get("progress")),
        honor_header=poll.get("interval", {}).get("honor_header", ""),
        captures=tuple((name, compile_path(path)) for name, path in poll.get("captures", {}).items()),
    )


@dataclass(frozen=True, slots=True)
class OutputSpec(_ByFieldName):
    """Where a response holds result files: ``url``, ``base64`` at ``path``, or the ``raw_body``."""

    kind: str
    path: ParsedResult | None = None
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class ResultSpec(_ByFieldName):
    """Which response holds the outputs (``status``, ``submit`` or an extra ``request``), and how.

    ``download_with_auth``: result URLs need the provider's key, so the adapter downloads them.
    """

    source: str
    outputs: tuple[OutputSpec, ...]
    request: RequestSpec | None = None
    download_with_auth: bool = False

    @property
    def only_raw_body(self) -> bool:
        """Whether the result is the whole body of the result request, with nothing else to read."""
        return all(output.kind == "raw_body" for output in self.outputs)


def result_of(data: Mapping[str, Any]) -> ResultSpec:
    result = data["result"]
    return ResultSpec(
        source=result["source"],
        outputs=tuple(
            OutputSpec(
                kind=output["kind"],
                path=_path(output.get("path")),
                content_type=output.get("content_type", ""),
            )
            for output in result["outputs"]
        ),
        request=_request(result["request"]) if "request" in result else None,
        download_with_auth=result.get("download", {}).get("auth", "none") == "inherit",
    )


@dataclass(frozen=True, slots=True)
class ErrorSpec(_ByFieldName):
    """Where answers hold the provider's error text and code, and when a 2xx answer means failure.

    ``call_*`` read a refused call (a non-2xx answer, ``accept_when`` false, ``failure_when`` on a
    submit) and ``task_*`` a failed task (a FAILED state, ``failure_when`` on a poll or result);
    each falls back to ``message``/``code`` when absent or empty, so one path may serve both.
    """

    message: ParsedResult | None = None
    code: ParsedResult | None = None
    failure_when: ParsedResult | None = None
    call_message: ParsedResult | None = None
    call_code: ParsedResult | None = None
    task_message: ParsedResult | None = None
    task_code: ParsedResult | None = None

    def paths(self, *, task: bool) -> tuple[tuple[ParsedResult, ...], tuple[ParsedResult, ...]]:
        """(message paths, code paths) to try in order for a failed task or a refused call."""
        first_message, first_code = (
            (self.task_message, self.task_code) if task else (self.call_message, self.call_code)
        )
        return (
            tuple(path for path in (first_message, self.message) if path is not None),
            tuple(path for path in (first_code, self.code) if path is not None),
        )


def error_of(data: Mapping[str, Any]) -> ErrorSpec:
    error = data.get("error", {})
    return ErrorSpec(
        message=_path(error.get("message")),
        code=_path(error.get("code")),
        failure_when=_path(error.get("failure_when")),
        call_message=_path(error.get("call_message")),
        call_code=_path(error.get("call_code")),
        task_message=_path(error.get("task_message")),
        task_code=_path(error.get("task_code")),
    )


@dataclass(frozen=True, slots=True)
class HttpErrorSpec(_ByFieldName):
    """Which answers are transient trouble worth a quick retry, and where the provider says when."""

    retryable: frozenset[int] = frozenset(_DEFAULT_RETRYABLE)
    retry_when: ParsedResult | None = None
    retry_after_header: str = ""
    key_refused_codes: frozenset[str] = frozenset()
    """The provider's own error codes (``error.code``) meaning the key was refused, like HTTP 401."""


def http_errors_of(data: Mapping[str, Any]) -> HttpErrorSpec:
    http_errors = data.get("http_errors", {})
    return HttpErrorSpec(
        retryable=frozenset(http_errors.get("retryable", _DEFAULT_RETRYABLE)),
        retry_when=_path(http_errors.get("retry_when")),
        retry_after_header=http_errors.get("retry_after_header", ""),
        key_refused_codes=frozenset(http_errors.get("key_refused_codes", ())),
    )


@dataclass(frozen=True, slots=True)
class CancelSpec(_ByFieldName):
    """The request that asks the provider to stop a task; with ``when_state`` it is sent only while
    the provider reports one of those raw states (asked with the poll request first), since some
    providers cancel only queued tasks and *delete* finished ones on the same call.
    """

    request: RequestSpec
    semantics: str = "cancel"
    when_state: frozenset[str] = frozenset()


def cancel_of(data: Mapping[str, Any]) -> CancelSpec | None:
    """The cancel section; None when the provider has no cancel (no request, or ``supported: false``)."""
    cancel = data.get("cancel", {})
    if "request" not in cancel or cancel.get("supported") is False:
        return None
    return CancelSpec(
        request=_request(cancel["request"]),
        semantics=cancel.get("semantics", "cancel"),
        when_state=frozenset(str(state) for state in cancel.get("when_state", ())),
    )


@dataclass(frozen=True, slots=True)
class RetiredSpec(_ByFieldName):
    """A preset whose API family was shut down upstream: since when (``date``) and why."""

    date: str
    reason: str


def retired_of(data: Mapping[str, Any]) -> RetiredSpec | None:
    retired = data.get("retired")
    return None if retired is None else RetiredSpec(date=retired["date"], reason=retired["reason"])


_DEFAULT_SAFETY_POLL_MS = 5 * 60_000
_DEFAULT_CALLBACK_TOLERANCE_MS = 5 * 60_000
_FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"


@dataclass(frozen=True, slots=True)
class WebhookSpec(_ByFieldName):
    """How the provider calls back: where the callback URL goes in the submit, how a callback names
    its task and how it is verified (see ``callbacks``)."""

    inject_in: str
    """``body`` (a JSON body field) or ``query`` (a query parameter of the submit)."""
    field: str
    extra: Mapping[str, Any]
    """More body fields sent with the URL (Replicate's ``webhook_events_filter``)."""
    task_id: ParsedResult
    """Where a callback's body names the task."""
    verify: str
    """``none``, ``standard-webhooks``, ``kie-hmac``, ``fal-ed25519`` or ``openrouter-hmac``."""
    jwks_url: str
    tolerance_ms: int
    """How old a signed callback's timestamp may be (either way)."""
    safety_poll_ms: int
    """Polls go on this sparsely while callbacks are expected (a lost callback costs only latency)."""
    secret_request: RequestSpec | None = None
    """Where the provider tells its webhook secret (Replicate's ``GET /v1/webhooks/default/secret``),
    asked with the provider's key when no secret is stored."""
    secret_path: ParsedResult | None = None
    state: ParsedResult | None = None
    """Where a callback's body says the task's (raw) state, for ``act_on``."""
    act_on: frozenset[str] = frozenset()
    """The raw states worth a poll (Kling calls back on every change: only ``succeed``/``failed``
    are); a callback in another state is answered and changes nothing. Empty: every callback is."""
    challenge: ParsedResult | None = None
    """Where a handshake callback carries its challenge (MiniMax's ``{"challenge": "…"}``); such a
    callback is answered at once with ``{challenge_echo: <the value>}`` and names no task."""
    challenge_echo: str = "challenge"


def webhook_of(data: Mapping[str, Any]) -> WebhookSpec | None:
    """The profile's webhook section, or None for a provider that does not call back."""
    webhook = data.get("webhook")
    if not webhook or "inject" not in webhook:
        return None
    inject, verify = webhook["inject"], webhook.get("verify", {})
    state, challenge = webhook.get("state", {}), webhook.get("challenge", {})
    return WebhookSpec(
        inject_in=inject.get("in", "body"),
        field=inject["field"],
        extra=MappingProxyType(dict(inject.get("extra", {}))),
        task_id=compile_path(webhook["task_id"]),
        verify=verify.get("type", "none"),
        jwks_url=verify.get("jwks_url", _FAL_JWKS_URL),
        tolerance_ms=parse_duration_ms(verify.get("tolerance"), _DEFAULT_CALLBACK_TOLERANCE_MS),
        safety_poll_ms=parse_duration_ms(webhook.get("safety_poll"), _DEFAULT_SAFETY_POLL_MS),
        secret_request=RequestSpec(method="GET", url=verify["secret_url"])
        if "secret_url" in verify
        else None,
        secret_path=_path(verify.get("secret_path", "key")),
        state=_path(state.get("path")),
        act_on=frozenset(str(value) for value in state.get("act_on", ())),
        challenge=_path(challenge.get("path")),
        challenge_echo=challenge.get("echo_as", "challenge"),
    )


@dataclass(frozen=True)
class PollTiming:
    """How to pace polls of one provider's tasks, in milliseconds."""

    initial_delay_ms: int
    backoff: float
    max_delay_ms: int
    min_interval_ms: int
    deadline_ms: int


def poll_timing_of(data: Mapping[str, Any]) -> PollTiming:
    """The pacing the orchestrator applies to a provider's tasks; ``limits.min_poll_interval`` raises it."""
    poll = data.get("poll", {})
    interval = poll.get("interval", {})
    minimum = parse_duration_ms(interval.get("min"), _DEFAULT_MIN_MS)
    minimum = max(minimum, parse_duration_ms(data.get("limits", {}).get("min_poll_interval"), 0))
    initial = max(parse_duration_ms(interval.get("initial"), _DEFAULT_INITIAL_MS), minimum)
    return PollTiming(
        initial_delay_ms=initial,
        backoff=float(interval.get("backoff", _DEFAULT_BACKOFF)),
        max_delay_ms=max(parse_duration_ms(interval.get("max"), _DEFAULT_MAX_MS), initial),
        min_interval_ms=minimum,
        deadline_ms=parse_duration_ms(poll.get("deadline"), _DEFAULT_DEADLINE_MS),
    )


def limits_of(data: Mapping[str, Any], timing: PollTiming) -> Limits:
    """The concurrency and submit-rate limits (``max_concurrency``, ``submit_rate``) the ledger enforces."""
    limits = data.get("limits", {})
    count, period = 0, 0.0
    if "submit_rate" in limits:
        number, _, window = str(limits["submit_rate"]).partition("/")
        window = window if window[:1].isdigit() else f"1{window}"
        count, period = int(number), parse_duration_ms(window, 0) / 1000
    return Limits(
        max_concurrency=int(limits.get("max_concurrency", 0)),
        submit_count=count,
        submit_period=period,
        retry_seconds=max(timing.initial_delay_ms / 1000, 1.0),
    )


@dataclass(frozen=True, slots=True)
class BillingSpec(_ByFieldName):
    """What the provider's answers say a task used (``usage``: amount, seconds, outputs paths) and
    whether it charges for tasks that fail."""

    usage: tuple[tuple[str, ParsedResult], ...] = ()
    charges_failures: bool = False


def billing_of(data: Mapping[str, Any]) -> BillingSpec | None:
    """The billing section; None when the profile has none."""
    billing = data.get("billing")
    if billing is None:
        return None
    usage = billing.get("usage", {})
    return BillingSpec(
        usage=tuple(
            (name, compile_path(usage[name])) for name in ("amount", "seconds", "outputs") if name in usage
        ),
        charges_failures=bool(billing.get("charges_failures", False)),
    )
