"""Building a provider's HTTP requests from its profile: templates, URLs, auth placement (a key, its
parts, or a signed token), multipart bodies and the input files they attach (fetched through the
SSRF guard, size-capped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import grpc
import httpx

from assetgen_provider_adapter.engine_types import ProviderTarget, as_text, decode_data_uri
from assetgen_provider_adapter.errors import ProviderUnreachable
from assetgen_provider_adapter.profile_sections import RequestSpec
from assetgen_provider_adapter.profiles import Profile
from assetgen_provider_adapter.signed_auth import TokenCache
from assetgen_provider_adapter.templates import render, render_text
from assetgen_runtime.errors import InvalidArgument
from assetgen_runtime.http import DirectClient
from assetgen_runtime.netguard import FetchFailed, NetworkGuard, guarded_stream

__all__ = ["AuthValues", "RequestBuilder"]

_WHOLE_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_-]*\s*\??\s*\}\}")

_MultipartParts = dict[str, tuple[str | None, bytes | str, str | None]]


def _render_url(template: str, context: Mapping[str, Any], raw_vars: tuple[str, ...]) -> str:
    """Renders a URL; values are percent-escaped except those named in ``raw_vars`` (Veo's
    ``operations/...`` names are paths) and a URL that is one placeholder as a whole.
    """
    if "{{" not in template:
        return template
    if _WHOLE_PLACEHOLDER.fullmatch(template.strip()):
        return render_text(template, context)
    raw = {*raw_vars, "submit_path"}  # a path of our own configuration, slashes and all
    escaped = {
        name: value if name in raw or not isinstance(value, str | int | float) else quote(str(value), safe="")
        for name, value in context.items()
    }
    return render_text(template, escaped)


def _join_url(base_url: str, url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return f"{base_url.rstrip('/')}/{url.lstrip('/')}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _secret_allowed(target: ProviderTarget, url: str) -> bool:
    """The key goes only to the provider's own base URL origin and hosts the profile lists."""
    scheme, host, port = _origin(url)
    if (scheme, host, port) == _origin(target.base_url):
        return True
    return scheme == "https" and host in target.profile.auth.hosts


class AuthValues:
    """The value of a provider's auth header or query parameter: its template over the key (one
    part, or named parts) and, when the profile signs one, a JWT kept by ``tokens`` until it is
    about to expire.
    """

    def __init__(self, tokens: TokenCache | None = None) -> None:
        self._tokens = tokens or TokenCache()

    def value(self, target: ProviderTarget) -> str:
        """The rendered auth value for ``target`` (its key must be set)."""
        auth = target.profile.auth
        values = target.key_values()
        if auth.jwt is not None:
            values["jwt"] = self._tokens.token(auth.jwt, values)
        return render_text(auth.template, values)

    def forget(self, target: ProviderTarget) -> None:
        """Drops ``target``'s cached token, if its auth signs one (the provider refused it)."""
        jwt = target.profile.auth.jwt
        if jwt is not None:
            self._tokens.forget(jwt, target.key_values())

    def headers(self, target: ProviderTarget, url: str) -> dict[str, str]:
        """The auth header for ``url`` when the profile sends the key there, else nothing."""
        auth = target.profile.auth
        if auth.placement != "header" or not target.has_key or not _secret_allowed(target, url):
            return {}
        return {auth.name: self.value(target)}


class RequestBuilder:
    """Renders a profile's request specs into ``httpx.Request`` objects of the shared client.

    ``guard`` checks every URL the provider supplied (a captured status URL, an input file) before it
    is used; ``max_inline_bytes`` caps an input file held in memory.
    """

    def __init__(
        self,
        client: DirectClient,
        *,
        default_timeout: float,
        guard: NetworkGuard,
        max_inline_bytes: int,
        auth: AuthValues | None = None,
    ) -> None:
        self.auth = auth or AuthValues()
        self._client = client
        self._default_timeout = default_timeout
        self._guard = guard
        self._max_inline = max_inline_bytes

    def timeout(self, profile: Profile) -> httpx.Timeout:
        """The timeout of one call to the provider of ``profile``."""
        timeout = profile.timeout_seconds(self._default_timeout)
        return httpx.Timeout(timeout, connect=min(timeout, 10.0))

    async def build(
        self,
        target: ProviderTarget,
        spec: RequestSpec,
        context: Mapping[str, Any],
        *,
        url_override: str = "",
        body_template: Any = None,
    ) -> httpx.Request:
        """The request ``spec`` describes, rendered with ``context``; ``url_override`` replaces its
        URL (a model's own endpoint) and ``body_template`` stands in for a body template it lacks.
        """
        profile = target.profile
        url = await self._url(target, spec, context, url_override)
        # A relative URL is on the base URL's origin by construction: no need to parse it to know.
        own_origin = not url.startswith(("http://", "https://"))
        url = _join_url(target.base_url, url)
        query = {key: render_text(value, context) for key, value in spec.query.items()}
        headers = {**profile.connection.default_headers, **spec.headers}
        headers = {key: render_text(value, context) for key, value in headers.items()}
        if spec.accept:
            headers["Accept"] = spec.accept
        auth = profile.auth
        if auth.placement != "none" and target.has_key and (own_origin or _secret_allowed(target, url)):
            if auth.placement == "header":
                headers[auth.name] = self.auth.value(target)
            else:
                query[auth.name] = self.auth.value(target)
        content: bytes | None = None
        files: _MultipartParts | None = None
        body = spec.body
        template = body.template if body.has_template else body_template
        if body.type == "json":
            content = json.dumps(render(template, context), ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        elif body.type == "multipart":
            files = await self._multipart(template, body.files, context)
            # httpx writes the multipart Content-Type with its boundary itself.
            headers = {key: value for key, value in headers.items() if key.lower() != "content-type"}
        return self._client.build_request(
            spec.method,
            url,
            params={key: value for key, value in query.items() if value != ""},
            headers=headers,
            content=content,
            files=files,
            timeout=self.timeout(profile),
        )

    async def _url(
        self, target: ProviderTarget, spec: RequestSpec, context: Mapping[str, Any], url_override: str
    ) -> str:
        if url_override:
            return _render_url(url_override, context, ())
        if not spec.url_from:
            return _render_url(spec.url, context, spec.raw_path_vars)
        url = str(context.get(spec.url_from) or "")
        if not url:
            raise ProviderUnreachable(
                f"provider {target.name}: the task handle lacks {spec.url_from!r} needed to reach it"
            )
        # A URL the provider handed us: it must not point into our own network.
        await self._guard.check_url(_join_url(target.base_url, url))
        return url

    async def _multipart(
        self, template: Any, file_specs: Mapping[str, str], context: Mapping[str, Any]
    ) -> _MultipartParts:
        """Form fields rendered from ``template`` plus files fetched from URLs; always multipart."""
        rendered = render(template, context) if template is not None else {}
        if not isinstance(rendered, Mapping):
            raise InvalidArgument("a multipart body template must be a JSON object of form fields")
        parts: _MultipartParts = {name: (None, as_text(value), None) for name, value in rendered.items()}
        for name, source in file_specs.items():
            url = render_text(source, context)
            if not url:
                continue  # an optional file placeholder left unset
            data, media_type = await self._fetch_input(url)
            parts[name] = (name, data, media_type or "application/octet-stream")
        return parts

    async def _fetch_input(self, url: str) -> tuple[bytes, str]:
        """An input file (e.g. the image of an image-to-video task), guarded and size-capped."""
        if url.startswith("data:"):
            try:
                return decode_data_uri(url)
            except ValueError as exc:
                raise InvalidArgument(f"malformed data: URI input: {exc}") from None
        chunks: list[bytes] = []
        size = 0
        try:
            async with guarded_stream(
                self._client, url, guard=self._guard, headers={}, timeout=self._default_timeout
            ) as response:
                media_type = response.headers.get("content-type", "")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_inline:
                        raise InvalidArgument(f"input file larger than {self._max_inline} bytes")
                    chunks.append(chunk)
        except FetchFailed as exc:
            # Nothing was sent to the provider yet: transient trouble may be retried, the rest is final.
            if exc.code == grpc.StatusCode.UNAVAILABLE:
                raise ProviderUnreachable(f"fetching an input file failed: {exc}") from None
            raise InvalidArgument(f"fetching an input file failed: {exc}") from None
        return b"".join(chunks), media_type
