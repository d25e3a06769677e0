"""The web console: plain ES modules and CSS from the ``console/`` folder, served at ``/``, no build step.

Its pages (``/``, ``/boxes``, ``/boxes/{box_id}``, ``/admin``) all answer ``index.html``, so a link to
any of them can be shared; the script decides what to show. The files live under
``/console/<version>/`` where the version is a hash of their content: a browser keeps them for a
year, while ``index.html`` (which names the version) is revalidated on every load, so a new deploy
is picked up at once. A file asked for under another version (a replica of the previous deploy
during a rollout) is served as it is now, but not cached.

Every console response carries a strict Content-Security-Policy: scripts, styles and API calls come
only from this origin and nothing runs inline. Pictures and videos may also come from the origins
of the stored files' URLs, which storage presigns for its S3 public endpoint (another origin): the
gateway's ``ASSETGEN_CONSOLE_MEDIA_ORIGINS`` names them; left empty, any http(s) origin is allowed
for media only, since the gateway cannot know where storage points and media cannot run code.

The pages and files hold no data, so they need no token: the console asks for an API key, keeps it
in session storage and sends it as a bearer header.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

__all__ = [
    "CONSOLE_DIR",
    "PAGE_PATHS",
    "ConsoleFiles",
    "add_console",
    "content_security_policy",
    "is_console_resource",
    "is_console_route",
    "load_console_files",
]

CONSOLE_DIR = Path(__file__).with_name("console")
PAGE_PATHS = ("/", "/boxes", "/boxes/", "/boxes/{box_id}", "/boxes/{box_id}/", "/admin", "/admin/")
FILE_PATH = "/console/{version}/{name}"
_VERSION_MARK = "__CONSOLE_VERSION__"
_ROUTE_PREFIX = "console."
_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


@dataclass(frozen=True)
class ConsoleFiles:
    """The console's files read once: their content, the version naming them, and the page."""

    version: str
    files: dict[str, bytes]
    page: bytes


def load_console_files(folder: Path = CONSOLE_DIR) -> ConsoleFiles:
    """Reads the console's files; the version is a hash of every name and content."""
    files = {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix in _CONTENT_TYPES
    }
    digest = hashlib.sha256()
    for name, body in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    version = digest.hexdigest()[:16]
    page = files.pop("index.html").replace(_VERSION_MARK.encode(), version.encode())
    return ConsoleFiles(version=version, files=files, page=page)


def content_security_policy(media_origins: tuple[str, ...] = ()) -> str:
    """The console's policy: everything from this origin only, media also from ``media_origins``.

    With no origins given, media may come from any http(s) origin (see the module docstring).
    """
    media = " ".join(media_origins) if media_origins else "http: https:"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' {media}",
            f"media-src 'self' {media}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def is_console_resource(resource: AbstractResource | None) -> bool:
    """Whether ``resource`` is one of the console's pages or files rather than part of the API."""
    name = resource.name if resource is not None else None
    return bool(name and name.startswith(_ROUTE_PREFIX))


def is_console_route(request: web.Request) -> bool:
    """Whether ``request`` is for a console page or file (open: they hold no data)."""
    return is_console_resource(getattr(request.match_info.route, "resource", None))


def add_console(app: web.Application, *, media_origins: tuple[str, ...] = ()) -> None:
    """Adds the console's pages and files to ``app``."""
    console = load_console_files()
    security = {
        "Content-Security-Policy": content_security_policy(media_origins),
        "X-Content-Type-Options": "nosniff",
        # Presigned file URLs are fetched from the page; the console's paths are nobody else's business.
        "Referrer-Policy": "no-referrer",
    }

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=console.page,
            content_type="text/html",
            charset="utf-8",
            headers={**security, "Cache-Control": _REVALIDATE},
        )

    async def file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = console.files.get(name)
        if body is None:
            raise web.HTTPNotFound()
        current = request.match_info["version"] == console.version
        return web.Response(
            body=body,
            content_type=_CONTENT_TYPES[Path(name).suffix],
            charset=None if name.endswith(".svg") else "utf-8",
            headers={**security, "Cache-Control": _IMMUTABLE if current else _REVALIDATE},
        )

    for number, path in enumerate(PAGE_PATHS):
        app.router.add_get(path, page, name=f"{_ROUTE_PREFIX}page{number}")
    app.router.add_get(FILE_PATH, file, name=f"{_ROUTE_PREFIX}file")
