"""Which ``{{placeholders}}`` each request of a profile may use, checked before any money is spent.

A task's requests see different values:

* **submit**: the generation's variables (``prompt``, ``image_url``, ``image_urls``, every key of
  ``config``), never the names that exist only later (``task_id``, captures);
* **poll**, **cancel**: ``task_id``, ``submit_path`` (the path the task was submitted to, e.g.
  Kling's ``/v1/videos/image2video``), the submit captures, and any generation variable the submit
  itself uses (the engine keeps those in the task's handle);
* **result** (a follow-up request once a poll says COMPLETED): all of the poll's, plus the poll
  captures (MiniMax's ``file_id``);
* **auth**: ``secret`` (a one-part key), the key's parts by name, ``jwt`` when the profile signs one;
  a JWT's claims and key: the parts, ``secret``, ``iat``, ``exp``, ``nbf``.

:func:`profile_problems` runs when a profile is validated (a name used where it cannot exist);
:func:`check_model` when a model is created or changed (a later request needs a variable the
submit does not give: a typo, or a variable never sent); :func:`check_key_shape` when a key or
profile is given (the auth uses parts the key lacks). Each is a 400 / INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from assetgen_provider_adapter.credentials import RESERVED_NAMES
from assetgen_provider_adapter.templates import TemplateVariables, inspect_template
from assetgen_runtime.errors import InvalidArgument

__all__ = [
    "LATER_BUILTINS",
    "auth_names",
    "check_key_shape",
    "check_model",
    "handle_names",
    "later_variables",
    "profile_problems",
    "submit_names",
    "submit_variables",
]

LATER_BUILTINS = frozenset({"task_id", "submit_path"})
"""Names every request after the submit may use, whatever the profile captures."""

_JWT_TIMES = frozenset({"iat", "exp", "nbf"})
_LATER_SECTIONS = ("poll", "result", "cancel")


def _names(template: Any) -> tuple[str, ...]:
    return inspect_template(template).variables


def _request_names(request: Mapping[str, Any], *, with_body: bool = True) -> tuple[str, ...]:
    """Every placeholder of a request as the profile writes it (not the model's template)."""
    parts: list[Any] = [
        request.get("url", ""),
        request.get("query", {}),
        request.get("headers", {}),
    ]
    body = request.get("body", {})
    if with_body:
        parts += [body.get("template"), body.get("files", {})]
    return _names(parts)


def _captures(data: Mapping[str, Any], section: str) -> frozenset[str]:
    return frozenset(data.get(section, {}).get("captures", {}))


def _later_requests(data: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for section in _LATER_SECTIONS:
        request = data.get(section, {}).get("request")
        if request is not None:
            yield section, request


def submit_names(data: Mapping[str, Any]) -> frozenset[str]:
    """Placeholders the profile's own submit request uses (its URL, query, headers, body template)."""
    return frozenset(_request_names(data["submit"]["request"]))


def later_variables(data: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Per later section, the generation variables it needs (names that are not built in or captured)."""
    default_headers = _names(data.get("connection", {}).get("default_headers", {}))
    submit_captures = _captures(data, "submit")
    needs: dict[str, frozenset[str]] = {}
    for section, request in _later_requests(data):
        known = LATER_BUILTINS | submit_captures
        if section == "result":
            known |= _captures(data, "poll")
        names = set(_request_names(request)) | set(default_headers)
        needs[section] = frozenset(names - known)
    return needs


def handle_names(data: Mapping[str, Any]) -> frozenset[str]:
    """What the submit keeps in the task's handle for later requests: the generation variables
    they use, and ``submit_path`` when one uses it.
    """
    names = frozenset().union(*later_variables(data).values())
    default_headers = _names(data.get("connection", {}).get("default_headers", {}))
    for _, request in _later_requests(data):
        if "submit_path" in (*_request_names(request), *default_headers):
            return names | {"submit_path"}
    return names


def auth_names(data: Mapping[str, Any]) -> frozenset[str]:
    """The credential names (``secret`` or part names) the profile's auth uses."""
    auth = data.get("auth", {})
    names = set(_names(auth.get("template", "")))
    jwt = auth.get("jwt")
    if jwt is not None:
        names.discard("jwt")
        names |= set(_names([jwt.get("secret", ""), jwt.get("claims", {})])) - _JWT_TIMES
    return frozenset(names)


def profile_problems(data: Mapping[str, Any]) -> list[str]:
    """Placeholders a schema-valid profile uses where they can never have a value."""
    problems: list[str] = []
    only_later = (
        LATER_BUILTINS | {"secret", "jwt"} | _captures(data, "submit") | _captures(data, "poll")
    ) - {"submit_path"}
    for name in sorted(submit_names(data) & (only_later | {"submit_path"})):
        problems.append(f"$.submit.request: {{{{{name}}}}} has no value when the task is submitted")
    default_headers = set(_names(data.get("connection", {}).get("default_headers", {})))
    for name in sorted(default_headers & (only_later | {"submit_path"})):
        problems.append(
            f"$.connection.default_headers: {{{{{name}}}}} has no value at the submit, which sends them too"
        )
    for section, request in _later_requests(data):
        for name in sorted(set(_request_names(request)) & {"secret", "jwt"}):
            problems.append(f"$.{section}.request: {{{{{name}}}}} is for auth only (auth.template)")
    auth = data.get("auth", {})
    jwt = auth.get("jwt")
    if jwt is not None and "jwt" not in _names(auth.get("template", "")):
        problems.append("$.auth.template: auth.jwt is set but the template never uses {{jwt}}")
    if jwt is None and "jwt" in _names(auth.get("template", "")):
        problems.append("$.auth.template: {{jwt}} needs auth.jwt to say how to sign it")
    for name in sorted(auth_names(data) & ((RESERVED_NAMES - {"secret"}) | LATER_BUILTINS)):
        problems.append(f"$.auth: {{{{{name}}}}} is not a key part (reserved name)")
    body = data["submit"]["request"].get("body", {})
    if "template" in body:
        given = submit_names(data)
        for section, names in later_variables(data).items():
            for name in sorted(names - given):
                problems.append(
                    f"$.{section}.request: {{{{{name}}}}} is neither built in (task_id, submit_path), "
                    "a capture, nor a variable the submit request uses"
                )
    return problems


def submit_variables(data: Mapping[str, Any], template: Any, api_endpoint: str) -> TemplateVariables:
    """The generation variables a task's submit uses: the body template in force (the profile's, or
    the model's), the profile's URL, query and headers, and the model's endpoint; so a variable a
    header needs is required before the asset exists, like one the body needs.
    """
    request = data["submit"]["request"]
    body = request.get("body", {})
    parts: list[Any] = [
        body["template"] if "template" in body else template,
        body.get("files", {}),
        request.get("query", {}),
        request.get("headers", {}),
        api_endpoint or request.get("url", ""),
        data.get("connection", {}).get("default_headers", {}),
    ]
    return inspect_template(parts)


def check_model(data: Mapping[str, Any], template: Any, api_endpoint: str) -> None:
    """InvalidArgument when the model and its provider's profile cannot make a whole task: the
    submit has no URL, or a later request needs a variable the submit never uses (so it would be
    missing after the provider accepted, and charged for, the task).
    """
    request = data["submit"]["request"]
    if not api_endpoint and not request.get("url") and not request.get("url_from"):
        raise InvalidArgument(
            "the provider's profile names no submit URL, so the model must give api_endpoint"
        )
    given = submit_names(data) | set(_names(template)) | set(_names(api_endpoint))
    if "template" in request.get("body", {}):
        given = submit_names(data) | set(_names(api_endpoint))
    problems = [
        f"the profile's {section} request uses {{{{{name}}}}}, which neither the model's template nor "
        "the submit request gives (nor is it task_id, submit_path or a capture)"
        for section, names in later_variables(data).items()
        for name in sorted(names - given)
    ]
    for name in sorted(
        set(_names(template)) & (LATER_BUILTINS | {"secret", "jwt"} | _captures(data, "submit"))
    ):
        problems.append(
            f"the model's template uses {{{{{name}}}}}, which has no value when the task is submitted"
        )
    if problems:
        raise InvalidArgument("; ".join(problems))


def check_key_shape(data: Mapping[str, Any], *, parts: Collection[str] | None) -> None:
    """InvalidArgument when the key given does not have what the profile's auth uses: ``parts``
    names a multi-part key's parts, None stands for a one-part key (``secret``).
    """
    needed = auth_names(data)
    if parts is None:
        missing = needed - {"secret"}
        if missing:
            raise InvalidArgument(
                f"the profile's auth uses key parts {', '.join(sorted(missing))}: give api_key as an object "
                f"of parts (HTTP), api_key_parts (gRPC) or --api-key-part NAME=env:VAR (CLI)"
            )
        return
    if "secret" in needed:
        raise InvalidArgument(
            "the profile's auth uses a one-part key ({{secret}}): give api_key as a string, not parts"
        )
    missing = needed - set(parts)
    if missing:
        raise InvalidArgument(
            f"the API key lacks part(s) {', '.join(sorted(missing))} the profile's auth uses"
        )
