"""Type-preserving request templates: a model's ``request_schema`` with ``{{variable}}`` placeholders.

A template is any JSON value (object, array, string, number, ...). Rendering walks it and builds new
Python data, which the caller serialises with :func:`json.dumps`, so the result is always valid JSON
whatever the variables contain (quotes, newlines, unicode).

Placeholders
    ``"{{name}}"``
        A string that is *exactly* one placeholder takes the variable's JSON value with its type:
        ``{"n": "{{count}}"}`` with ``count = 2`` renders ``{"n": 2}``; a list stays a list, an object
        an object. Kie's ``"duration": "5"`` stays a string because the caller passes the string.
    ``"a {{name}} b"``
        Placeholders inside a longer string are interpolated as text; non-string values are written
        as compact JSON (``[1,2]``, ``true``, ``null``).
    ``"{{name?}}"``
        The ``?`` marks the variable optional. When it is unset, a key whose value is exactly this
        placeholder is dropped from its object and an array element is dropped from its array; inside
        a longer string the placeholder becomes ``""``. Without ``?`` a variable is required, and
        rendering without it fails with :class:`MissingVariables` naming every missing variable.

A variable whose value is ``None`` (JSON ``null``) counts as unset, so a caller may pass
``"image_url": null`` for a text-only generation. Object keys are left literal. Spaces inside the
braces are allowed (``{{ prompt }}``); names are letters, digits, ``_`` and ``-``.

The orchestrator's variables are ``prompt``, ``image_url``, ``image_urls`` and every key of the
asset's ``config``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from assetgen_runtime.errors import InvalidArgument

__all__ = ["MissingVariables", "TemplateVariables", "inspect_template", "render", "render_text"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*(\?)?\s*\}\}")

# Marks a value to remove from its parent; never escapes render().
_DROP = object()


class MissingVariables(InvalidArgument):
    """Required template variables were not given; ``names`` lists them all, sorted."""

    def __init__(self, names: list[str]) -> None:
        self.names = sorted(set(names))
        plural = "s" if len(self.names) > 1 else ""
        super().__init__(f"missing template variable{plural}: {', '.join(self.names)}")


@dataclass(frozen=True)
class TemplateVariables:
    """The variables a template uses, and those of them it requires (not marked ``?``)."""

    variables: tuple[str, ...]
    required: tuple[str, ...]


def _placeholders(template: Any) -> Iterator[tuple[str, bool]]:
    """Yields (name, optional) for every placeholder in string values, depth first."""
    if isinstance(template, str):
        for match in _PLACEHOLDER.finditer(template):
            yield match.group(1), match.group(2) == "?"
    elif isinstance(template, Mapping):
        for value in template.values():
            yield from _placeholders(value)
    elif isinstance(template, list | tuple):
        for item in template:
            yield from _placeholders(item)


def inspect_template(template: Any) -> TemplateVariables:
    """Lists a template's variables in order of first use; required ones are never marked ``?``.

    A variable used both with and without ``?`` is required, since one of its uses needs it.
    """
    order: dict[str, bool] = {}
    for name, optional in _placeholders(template):
        order[name] = order.get(name, False) or not optional
    return TemplateVariables(
        variables=tuple(order), required=tuple(name for name, required in order.items() if required)
    )


def _is_set(variables: Mapping[str, Any], name: str) -> bool:
    return variables.get(name) is not None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _interpolate(text: str, variables: Mapping[str, Any], missing: list[str]) -> str:
    """``text`` with every placeholder written as text; unset required names are added to ``missing``."""

    def substitute(match: re.Match[str]) -> str:
        name, optional = match.group(1), match.group(2) == "?"
        if _is_set(variables, name):
            return _as_text(variables[name])
        if not optional:
            missing.append(name)
        return ""

    return _PLACEHOLDER.sub(substitute, text)


def _render_string(text: str, variables: Mapping[str, Any], missing: list[str]) -> Any:
    if "{{" not in text:
        return text
    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        name, optional = whole.group(1), whole.group(2) == "?"
        if _is_set(variables, name):
            return variables[name]
        if not optional:
            missing.append(name)
        return _DROP
    return _interpolate(text, variables, missing)


def _render(template: Any, variables: Mapping[str, Any], missing: list[str]) -> Any:
    if isinstance(template, str):
        return _render_string(template, variables, missing)
    if isinstance(template, Mapping):
        rendered: dict[str, Any] = {}
        for key, value in template.items():
            item = _render(value, variables, missing)
            if item is not _DROP:
                rendered[key] = item
        return rendered
    if isinstance(template, list | tuple):
        return [
            item for item in (_render(value, variables, missing) for value in template) if item is not _DROP
        ]
    return template


def render(template: Any, variables: Mapping[str, Any]) -> Any:
    """Renders ``template`` with ``variables`` into new Python data (the template is not changed).

    Raises :class:`MissingVariables` naming every required variable that is unset. A top-level
    template that is exactly an optional, unset placeholder renders as ``None``.
    """
    missing: list[str] = []
    rendered = _render(template, variables, missing)
    if missing:
        raise MissingVariables(missing)
    return None if rendered is _DROP else rendered


def render_text(text: str, variables: Mapping[str, Any]) -> str:
    """Renders placeholders in a URL, query value or header as text, whatever the value's type."""
    if "{{" not in text:
        return text
    missing: list[str] = []
    rendered = _interpolate(text, variables, missing)
    if missing:
        raise MissingVariables(missing)
    return rendered
