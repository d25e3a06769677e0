"""JMESPath, the path dialect of provider profiles, with the two functions providers need.

``from_json(s)``
    Parses a JSON text (Kie's ``data.resultJson`` is a JSON *string*); ``null`` for ``null`` or text
    that is not JSON, so a half-written field reads as absent rather than failing the poll.
``as_list(v)``
    ``v`` if it is an array, ``[]`` for ``null``, else ``[v]`` (Replicate's output is a string or a list).

Profiles compile their expressions once when parsed (:func:`compile_path`) and evaluate the
compiled form (:func:`evaluate`); :func:`search` compiles through a cache for ad-hoc use. One shared
interpreter evaluates them all, since every poll evaluates the same few.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jmespath
from jmespath import functions, visitor
from jmespath.exceptions import JMESPathError, JMESPathTypeError
from jmespath.parser import ParsedResult

__all__ = ["JMESPathError", "ParsedResult", "compile_path", "evaluate", "search", "truthy"]


class _ProviderFunctions(functions.Functions):
    @functions.signature({"types": ["string", "null"]})
    def _func_from_json(self, text: str | None) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    @functions.signature({"types": []})
    def _func_as_list(self, value: Any) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        return [value]


_OPTIONS = jmespath.Options(custom_functions=_ProviderFunctions())
# ParsedResult.search builds a new interpreter on every call; one shared interpreter does the same
# work (it keeps no state between searches) without rebuilding it each time.
_INTERPRETER = visitor.TreeInterpreter(_OPTIONS)


@lru_cache(maxsize=1024)
def compile_path(expression: str) -> ParsedResult:
    """Compiles an expression; raises ``JMESPathError`` (with the position) when it is malformed."""
    return jmespath.compile(expression)


def evaluate(path: ParsedResult, data: Any) -> Any:
    """Evaluates a compiled expression on ``data``; ``None`` where the data lacks what it asks for.

    A function given the wrong type (``join`` on a missing list) is also ``None``: provider bodies
    vary, and a field that is absent in this response must not fail the whole call.
    """
    try:
        return _INTERPRETER.visit(path.parsed, data)
    except JMESPathTypeError:
        return None


def search(expression: str, data: Any) -> Any:
    """Evaluates ``expression`` (compiled through a cache) on ``data``, as :func:`evaluate` does."""
    return evaluate(compile_path(expression), data)


def truthy(value: Any) -> bool:
    """JMESPath truth: false for null, false, empty string, empty array and empty object."""
    # Not ``value in (...)``: 0 == False in Python, yet 0 is true in JMESPath.
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict) and not value)
