"""Reading JSON objects out of text that a caller, a provider or a peer sent.

One place decides what "a JSON object from text" means, so every caller words its refusal the same
way and none forgets that valid JSON may still be a list, a string or a number.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["NotAJsonObject", "parse_json_object"]


class NotAJsonObject(ValueError):
    """The text is not JSON, or is JSON but not an object; the message names the field and which."""


def parse_json_object(text: str | bytes, what: str, *, blank: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object in ``text``; ``what`` names it in the error (``"variables_json"``).

    Blank text (an unset proto string field arrives empty) is ``blank`` when one is given, and an
    error otherwise.
    """
    if blank is not None and not text.strip():
        return dict(blank)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise NotAJsonObject(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise NotAJsonObject(f"{what} must be a JSON object")
    return value
