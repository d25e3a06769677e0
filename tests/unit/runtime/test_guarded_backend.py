"""The fetch guard's named rules and the network backend that connects only to checked addresses."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from assetgen_runtime.guarded_backend import GuardedNetworkBackend
from assetgen_runtime.http import DirectClient, ShardedTransport
from assetgen_runtime.netguard import AddressRefused, FetchRefused, NetworkGuard


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "is link-local (metadata)"),
        ("fd00:ec2::254", "is private (metadata)"),
        ("100.64.0.1", "is shared address space (CGNAT)"),
        ("100.127.255.254", "is shared address space (CGNAT)"),
        ("10.0.0.1", "is private"),
        ("::1", "is loopback"),
        ("64:ff9b::a00:1", "embeds 10.0.0.1, which is private"),
        ("64:ff9b:1::a9fe:a9fe", "embeds 169.254.169.254, which is link-local (metadata)"),
        ("::ffff:100.64.0.1", "embeds 100.64.0.1, which is shared address space (CGNAT)"),
    ],
)
def test_refused_addresses_name_their_rule(address: str, reason: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        NetworkGuard().check_address(address)
    assert refused.value.reason == reason
    assert ipaddress.ip_address(refused.value.address) == ipaddress.ip_address(address)


def test_allowed_networks_still_open_cgnat_when_listed() -> None:
    assert str(NetworkGuard(["100.64.0.0/10"]).check_address("100.64.0.1")) == "100.64.0.1"


class _Resolver:
    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.calls = 0

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls += 1
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


@pytest.fixture
async def echo_host() -> AsyncIterator[int]:
    """A loopback HTTP server answering with the Host header it got; yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        host = next(
            line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:")
        )
        body = host.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_requests_go_to_the_checked_address_and_keep_their_host(echo_host: int) -> None:
    resolver = _Resolver({"provider.test": ["127.0.0.1"]})
    backend = GuardedNetworkBackend(NetworkGuard(["127.0.0.0/8"], resolver=resolver))
    async with DirectClient(transport=ShardedTransport(1, httpx.Limits(), network_backend=backend)) as client:
        response = await client.get(f"http://provider.test:{echo_host}/x")
    assert response.text == f"provider.test:{echo_host}"


async def test_a_refused_host_is_refused_before_any_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    async def open_connection(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("no connection may be attempted")

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    resolver = _Resolver({"inside.test": ["93.184.216.34", "10.0.0.7"]})
    backend = GuardedNetworkBackend(NetworkGuard(["127.0.0.0/8"], resolver=resolver))
    async with DirectClient(transport=ShardedTransport(1, httpx.Limits(), network_backend=backend)) as client:
        with pytest.raises(AddressRefused, match=r"address 10\.0\.0\.7 is private"):
            await client.send_direct(client.build_request("GET", "http://inside.test/x"))
        with pytest.raises(AddressRefused, match=r"is link-local \(metadata\)"):
            await client.get("http://169.254.169.254/latest/meta-data/")
        with pytest.raises(FetchRefused, match="does not resolve"):
            await client.get("http://nowhere.test/")
    assert attempts == []


async def test_a_hosts_check_is_remembered_for_a_while() -> None:
    now = [0.0]
    resolver = _Resolver({"provider.test": ["127.0.0.1"]})
    backend = GuardedNetworkBackend(
        NetworkGuard(["127.0.0.0/8"], resolver=resolver), ttl=30.0, clock=lambda: now[0]
    )
    assert await backend.checked_address("provider.test", 80) == "127.0.0.1"
    assert await backend.checked_address("provider.test", 80) == "127.0.0.1"
    assert resolver.calls == 1
    now[0] = 31.0
    resolver.table["provider.test"] = ["10.0.0.1"]  # the name moved: the next check sees it
    with pytest.raises(AddressRefused):
        await backend.checked_address("provider.test", 80)
    assert resolver.calls == 2
