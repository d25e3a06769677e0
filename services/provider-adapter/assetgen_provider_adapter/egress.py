"""Where provider API calls may go, checked when a provider or model is created or changed.

A provider's ``base_url``, a model's absolute ``api_endpoint`` and the hosts a profile sends the key
to must name a host the operator allows (``ASSETGEN_PROVIDER_HOSTS``; none listed: any host), and
``base_url`` and ``api_endpoint`` must not be, or resolve to, an address the :class:`NetworkGuard`
refuses (loopback, private, link-local and metadata, CGNAT, ...). Names that do not resolve now are
accepted: every connection is checked again when it is made (:mod:`assetgen_runtime.guarded_backend`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from assetgen_runtime.errors import InvalidArgument
from assetgen_runtime.netguard import AddressRefused, FetchRefused, NetworkGuard

__all__ = ["ProviderEgress", "host_matches"]

# A create or update must not hang on a slow resolver; the call-time check still applies.
_RESOLVE_TIMEOUT = 3.0


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``patterns``: ``api.kie.ai`` exactly, ``*.replicate.com`` any subdomain."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif pattern and host == pattern:
            return True
    return False


class ProviderEgress:
    """Checks the destinations of provider calls against the guard and the operator's host list."""

    def __init__(self, guard: NetworkGuard, provider_hosts: Sequence[str] = ()) -> None:
        self._guard = guard
        self._hosts = tuple(pattern.strip() for pattern in provider_hosts if pattern.strip())

    def check_host_allowed(self, field: str, host: str) -> None:
        """InvalidArgument when an operator host list is set and ``host`` is not on it."""
        if self._hosts and not host_matches(host, self._hosts):
            raise InvalidArgument(
                f"{field}: host {host!r} is not among the allowed provider hosts (ASSETGEN_PROVIDER_HOSTS)"
            )

    async def check_url(self, field: str, url: str) -> None:
        """InvalidArgument naming the rule when ``url``'s host is not allowed or its address refused."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise InvalidArgument(f"{field} must be an http(s) URL with a host")
        self.check_host_allowed(field, host)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise InvalidArgument(f"{field} has an invalid port") from None
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT):
                await self._guard.check_host(host, port)
        except AddressRefused as exc:
            literal = _is_ip(host)
            where = exc.address if literal else f"{host} resolves to {exc.address}, which"
            raise InvalidArgument(f"{field}: {where} {exc.reason} and not allowed") from None
        except (FetchRefused, TimeoutError):
            pass  # does not resolve (now): every connection is checked when it is made

    def check_key_hosts(self, field: str, hosts: Iterable[str]) -> None:
        """The hosts a profile sends the key to must be allowed provider hosts (when a list is set)."""
        for host in hosts:
            self.check_host_allowed(field, host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
