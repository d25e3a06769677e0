"""Which providers may use an ``env:``/``file:`` API key reference, and when a stored key must be given again.

A key reference is usable only by the provider that first stored it, unless the operator lists the
providers that share it in ``ASSETGEN_KEY_REF_ALLOWLIST`` (then exactly those may use it). A stored key
stays with the destination it was given for: changing a provider's base URL origin or the hosts its
profile sends the key to needs the key (or reference) again in the same request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from assetgen_runtime.errors import InvalidArgument

__all__ = ["KeyRefAllowList", "check_destination_change", "origin_of"]


class KeyRefAllowList:
    """``ref=name[,name...]`` entries: ``env:ASSETGEN_PROVIDER_KEY_KIE=kie,file:shared=prov-a,prov-b``.

    Items are split at commas; an item with ``=`` starts an entry, one without adds a provider name
    to the entry before it.
    """

    def __init__(self, items: Iterable[str] = ()) -> None:
        entries: dict[str, set[str]] = {}
        current: set[str] | None = None
        for item in (item.strip() for item in items):
            if not item:
                continue
            if "=" in item:
                reference, _, name = item.partition("=")
                current = entries.setdefault(reference.strip(), set())
                item = name
            if current is None:
                raise ValueError(f"ASSETGEN_KEY_REF_ALLOWLIST: {item!r} is not after a ref= entry")
            if item.strip():
                current.add(item.strip())
        self._entries: Mapping[str, frozenset[str]] = {
            ref: frozenset(names) for ref, names in entries.items()
        }

    def listed(self, reference: str) -> frozenset[str] | None:
        """The providers allowed to use ``reference``, or None when the operator does not list it."""
        return self._entries.get(reference)

    def check(self, reference: str, provider: str, other_users: Iterable[str]) -> None:
        """InvalidArgument unless ``provider`` may use ``reference`` (others using it: ``other_users``)."""
        listed = self.listed(reference)
        if listed is not None:
            if provider not in listed:
                raise InvalidArgument(
                    f"api_key_ref {reference!r} is reserved for providers {', '.join(sorted(listed))} "
                    "(ASSETGEN_KEY_REF_ALLOWLIST)"
                )
            return
        users = sorted(other_users)
        if users:
            raise InvalidArgument(
                f"api_key_ref {reference!r} belongs to provider {users[0]!r}; a key reference is usable "
                "only by the provider created with it (or those listed in ASSETGEN_KEY_REF_ALLOWLIST)"
            )


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    return (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or {"http": 80, "https": 443}.get(parts.scheme),
    )


def check_destination_change(
    *,
    has_key: bool,
    key_given: bool,
    old_base_url: str,
    new_base_url: str,
    old_key_hosts: frozenset[str],
    new_key_hosts: frozenset[str],
) -> None:
    """InvalidArgument when a stored key would go somewhere new without being given again."""
    if not has_key or key_given:
        return
    if origin_of(old_base_url) != origin_of(new_base_url):
        raise InvalidArgument(
            "changing base_url to another origin needs the API key again: give api_key or api_key_ref "
            "in the same request (a stored key goes only where it was given for)"
        )
    if not new_key_hosts <= old_key_hosts:
        raise InvalidArgument(
            "changing the profile's auth.hosts needs the API key again: give api_key or api_key_ref "
            "in the same request (a stored key goes only where it was given for)"
        )
