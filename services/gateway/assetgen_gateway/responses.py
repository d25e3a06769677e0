"""The JSON responses of the HTTP API: a value, or ``{"error": "..."}`` with its HTTP status."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["error_response", "json_response"]


def json_response(value: Any, status: int = 200) -> web.Response:
    """``value`` as JSON, non-ASCII text kept as it is."""
    return web.Response(
        text=json.dumps(value, ensure_ascii=False), status=status, content_type="application/json"
    )


def error_response(status: int, message: str) -> web.Response:
    """The one error shape every route answers with."""
    return web.json_response({"error": message}, status=status)
