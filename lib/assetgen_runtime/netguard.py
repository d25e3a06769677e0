"""The guard against server-side request forgery that every outbound download of a caller's URL goes through.

Storage's ingest and the provider adapter's result downloads fetch URLs that come from outside. Before
any connection, :class:`NetworkGuard` resolves the host and refuses loopback, private, link-local,
multicast, reserved and unspecified addresses (and IPv4 addresses hidden in IPv6 forms) unless they lie
inside the configured allowed networks. :func:`guarded_stream` then connects to the very address it
checked, so a second DNS answer cannot switch it (DNS rebinding), and follows redirects itself, checking
every hop the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import grpc
import httpx

from assetgen_runtime.errors import AssetGenError, InvalidArgument

__all__ = ["FetchFailed", "FetchRefused", "NetworkGuard", "Resolver", "guarded_stream", "redact_url"]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves (host, port) to the IP addresses a connection could reach, as strings."""

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# Cloud instance metadata services: the first thing a forged request goes for, so named as such.
_METADATA = frozenset({ipaddress.IPv4Address("169.254.169.254"), ipaddress.IPv6Address("fd00:ec2::254")})


class FetchRefused(InvalidArgument):
    """A URL may not be fetched: wrong scheme, a forbidden address, or too many redirects."""


class AddressRefused(FetchRefused):
    """An address a fetch may not reach; ``address`` and ``reason`` ("is loopback") say which and why."""

    def __init__(self, message: str, *, address: str, reason: str) -> None:
        super().__init__(message)
        self.address = address
        self.reason = reason


class FetchFailed(AssetGenError):
    """A permitted fetch did not deliver: the remote answered non-2xx or the connection failed.

    5xx, 429 and network failures are UNAVAILABLE (worth retrying later); other statuses
    FAILED_PRECONDITION. ``status_code`` is the remote's HTTP status, 0 for network failures.
    """

    def __init__(self, message: str, *, status_code: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code
        retryable = status_code == 0 or status_code == 429 or status_code >= 500
        self.code = grpc.StatusCode.UNAVAILABLE if retryable else grpc.StatusCode.FAILED_PRECONDITION


def redact_url(url: httpx.URL | str) -> str:
    """The URL without user info, query or fragment, safe for messages and logs (queries carry keys)."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))


async def _system_resolver(host: str, port: int) -> Sequence[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # An IPv6 address can carry an IPv4 one that the stack (or a NAT64/6to4 gateway) reaches instead.
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _LOCAL_NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address ("is loopback", ...), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = _forbidden_reason(embedded)
            return f"embeds {embedded}, which {inner}" if inner else None
    if address in _METADATA:
        return "is link-local (metadata)" if address.is_link_local else "is private (metadata)"
    if address in _CGNAT:
        return "is shared address space (CGNAT)"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    for reason, hit in checks:
        if hit:
            return f"is {reason}"
    return None


class NetworkGuard:
    """Decides which addresses outbound fetches may reach: public ones plus ``allowed_networks``.

    ``resolver`` is substitutable so tests can make a public-looking name resolve to loopback.
    """

    def __init__(self, allowed_networks: Sequence[str] = (), *, resolver: Resolver | None = None) -> None:
        try:
            self._allowed: tuple[IPNetwork, ...] = tuple(
                ipaddress.ip_network(cidr.strip(), strict=False) for cidr in allowed_networks if cidr.strip()
            )
        except ValueError as exc:
            raise ValueError(f"invalid allowed network: {exc}") from None
        self._resolve = resolver or _system_resolver

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        """The networks reachable besides public addresses."""
        return self._allowed

    def _is_allowed(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)):
            candidates.append(embedded)
        return any(
            candidate in network
            for candidate in candidates
            for network in self._allowed
            if candidate.version == network.version
        )

    def check_address(self, address: str, *, url: str = "") -> IPAddress:
        """The parsed address if a fetch may connect to it; otherwise :class:`FetchRefused`."""
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise FetchRefused(f"cannot fetch {url}: {address!r} is not an IP address") from None
        if self._is_allowed(parsed):
            return parsed
        reason = _forbidden_reason(parsed)
        if reason:
            raise AddressRefused(
                f"refusing to fetch {url}: address {parsed} {reason}", address=str(parsed), reason=reason
            )
        return parsed

    async def check_url(self, url: str) -> tuple[httpx.URL, str]:
        """Parses ``url``, resolves its host and checks every address; returns (url, the IP to connect to).

        Refuses (:class:`FetchRefused`) anything but http(s), URLs without a host, names that do not
        resolve, and names with *any* forbidden address among their answers.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise FetchRefused(f"cannot fetch {url!r}: not a valid URL ({exc})") from None
        shown = redact_url(parsed)
        if parsed.scheme not in ("http", "https"):
            raise FetchRefused(f"refusing to fetch {shown}: only http and https URLs are allowed")
        host = parsed.host
        if not host:
            raise FetchRefused(f"refusing to fetch {shown}: the URL has no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return parsed, await self.check_host(host, port, shown=shown)

    async def check_host(self, host: str, port: int, *, shown: str = "") -> str:
        """The IP to connect to for ``host``: resolved (unless a literal) and every answer checked.

        ``shown`` names the fetch in messages (default ``host:port``).
        """
        shown = shown or f"{host}:{port}"
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses: Sequence[str] = [str(literal)]
        else:
            try:
                addresses = await self._resolve(host, port)
            except (OSError, UnicodeError) as exc:
                raise FetchRefused(f"cannot fetch {shown}: host {host!r} does not resolve ({exc})") from None
            if not addresses:
                raise FetchRefused(f"cannot fetch {shown}: host {host!r} resolves to no address")
        checked = [self.check_address(address, url=f"{shown} (host {host})") for address in addresses]
        return str(checked[0])


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _pinned_request(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    ip: str,
    headers: Mapping[str, str],
    timeout: httpx.Timeout | float,
) -> httpx.Request:
    """A request to ``ip`` that still says ``url``'s host (Host header, TLS SNI and certificate check)."""
    pinned = url.copy_with(host=ip)
    request_headers = {key: value for key, value in headers.items() if key.lower() != "host"}
    request_headers["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request(
        method, pinned, headers=request_headers, timeout=timeout, extensions=extensions
    )


@contextlib.asynccontextmanager
async def guarded_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    guard: NetworkGuard,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    max_redirects: int = 5,
    timeout: httpx.Timeout | float = 30.0,
) -> AsyncIterator[httpx.Response]:
    """Streams ``url``'s 2xx response, every hop checked by ``guard`` and connected to the checked IP.

    Redirects are followed here (at most ``max_redirects``); the given ``headers`` (credentials) are
    dropped once a redirect leaves the original scheme, host and port. Raises :class:`FetchRefused`
    for a forbidden hop, :class:`FetchFailed` for a non-2xx final answer or a network failure, also one
    that happens while the caller reads the body.
    """
    current, ip = await guard.check_url(url)
    original_origin = _origin(current)
    given_headers: Mapping[str, str] = dict(headers or {})
    redirects = 0
    while True:
        request = _pinned_request(client, method, current, ip, given_headers, timeout)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            raise FetchFailed(f"fetching {redact_url(current)} failed: {exc or type(exc).__name__}") from exc
        if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
            await response.aclose()
            redirects += 1
            if redirects > max_redirects:
                raise FetchRefused(
                    f"refusing to fetch {redact_url(url)}: more than {max_redirects} redirects"
                )
            try:
                target = current.join(response.headers["location"])
            except httpx.InvalidURL as exc:
                raise FetchRefused(f"{redact_url(current)} redirects to an invalid URL: {exc}") from None
            if response.status_code == 303 and method != "HEAD":
                method = "GET"
            elif response.status_code in (301, 302) and method == "POST":
                method = "GET"
            if _origin(target) != original_origin and given_headers:
                # Credentials meant for one origin must not travel to another.
                given_headers = {}
            current, ip = await guard.check_url(str(target))
            continue
        try:
            if not response.is_success:
                raise FetchFailed(
                    f"fetching {redact_url(current)} failed: HTTP {response.status_code}",
                    status_code=response.status_code,
                )
            try:
                yield response
            except httpx.TransportError as exc:
                raise FetchFailed(
                    f"download from {redact_url(current)} broke off: {exc or type(exc).__name__}"
                ) from exc
        finally:
            await response.aclose()
        return
