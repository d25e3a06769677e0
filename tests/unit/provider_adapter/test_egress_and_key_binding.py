"""Where provider calls may go (host list, refused addresses) and which providers may use a stored key."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from assetgen_provider_adapter.egress import ProviderEgress, host_matches
from assetgen_provider_adapter.key_binding import KeyRefAllowList, check_destination_change
from assetgen_runtime.errors import InvalidArgument
from assetgen_runtime.netguard import NetworkGuard


def _guard(table: dict[str, Sequence[str]], allowed: Sequence[str] = ()) -> NetworkGuard:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return NetworkGuard(allowed, resolver=resolve)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.kie.ai", True),
        ("API.KIE.AI", True),
        ("x.api.kie.ai", False),
        ("api.replicate.com", True),
        ("a.b.replicate.com", True),
        ("replicate.com", False),
        ("evilreplicate.com", False),
        ("example.com", False),
    ],
)
def test_host_patterns(host: str, expected: bool) -> None:
    assert host_matches(host, ["api.kie.ai", "*.replicate.com"]) is expected


async def test_a_name_resolving_to_a_private_address_is_refused_with_the_rule() -> None:
    egress = ProviderEgress(_guard({"localhost": ["127.0.0.1", "::1"]}))
    with pytest.raises(InvalidArgument) as refused:
        await egress.check_url("base_url", "http://localhost:8080")
    assert (
        str(refused.value) == "base_url: localhost resolves to 127.0.0.1, which is loopback and not allowed"
    )


async def test_literal_addresses_and_the_operator_host_list() -> None:
    egress = ProviderEgress(_guard({"api.kie.ai": ["93.184.216.34"]}), ["api.kie.ai"])
    await egress.check_url("base_url", "https://api.kie.ai")
    with pytest.raises(InvalidArgument, match="not among the allowed provider hosts"):
        await egress.check_url("base_url", "https://api.example.com")
    with pytest.raises(InvalidArgument, match=r"auth\.hosts: host 'cdn\.example\.com' is not among"):
        egress.check_key_hosts("auth.hosts", ["cdn.example.com"])
    open_egress = ProviderEgress(_guard({}))
    with pytest.raises(
        InvalidArgument, match=r"^api_endpoint: 169\.254\.169\.254 is link-local \(metadata\)"
    ):
        await open_egress.check_url("api_endpoint", "http://169.254.169.254/latest")
    await open_egress.check_url("base_url", "https://not-resolving.example")  # checked when connecting


def test_key_reference_allow_list() -> None:
    allow = KeyRefAllowList("env:ASSETGEN_PROVIDER_KEY_KIE=kie,file:shared=prov-a,prov-b".split(","))
    assert allow.listed("file:shared") == {"prov-a", "prov-b"}
    allow.check("file:shared", "prov-b", ["prov-a"])
    with pytest.raises(InvalidArgument, match="reserved for providers kie"):
        allow.check("env:ASSETGEN_PROVIDER_KEY_KIE", "other", [])
    allow.check("env:ASSETGEN_PROVIDER_KEY_X", "first", [])
    with pytest.raises(InvalidArgument, match="belongs to provider 'first'"):
        allow.check("env:ASSETGEN_PROVIDER_KEY_X", "second", ["first"])
    with pytest.raises(ValueError, match="not after a ref= entry"):
        KeyRefAllowList(["prov-a"])


def test_a_new_destination_needs_the_key_again() -> None:
    same = {"old_key_hosts": frozenset({"a.example"}), "new_key_hosts": frozenset()}
    check_destination_change(
        has_key=True,
        key_given=False,
        old_base_url="https://api.x",
        new_base_url="https://api.x:443/v2",
        **same,
    )
    with pytest.raises(InvalidArgument, match="base_url"):
        check_destination_change(
            has_key=True, key_given=False, old_base_url="https://api.x", new_base_url="http://api.x", **same
        )
    check_destination_change(
        has_key=True, key_given=True, old_base_url="https://api.x", new_base_url="https://evil.x", **same
    )
    check_destination_change(
        has_key=False, key_given=False, old_base_url="https://api.x", new_base_url="https://evil.x", **same
    )
    with pytest.raises(InvalidArgument, match=r"auth\.hosts"):
        check_destination_change(
            has_key=True,
            key_given=False,
            old_base_url="https://api.x",
            new_base_url="https://api.x",
            old_key_hosts=frozenset(),
            new_key_hosts=frozenset({"evil.x"}),
        )
