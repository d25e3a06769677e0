"""The SSRF guard: which addresses it refuses, and how guarded_stream pins, redirects and fails."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import httpx
import pytest

from assetgen_runtime.errors import InvalidArgument
from assetgen_runtime.netguard import FetchFailed, FetchRefused, NetworkGuard, guarded_stream, redact_url


def fake_resolver(table: dict[str, Sequence[str]]):
    """A resolver answering from ``table``; unknown names fail like a DNS miss."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://127.8.9.10/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://0.0.0.0/x",
        "http://[::]/x",
        "http://10.1.2.3/x",
        "http://172.16.0.1/x",
        "http://192.168.1.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://224.0.0.1/x",
        "http://[ff02::1]/x",
        "http://240.0.0.1/x",
        "http://100.64.0.1/x",
        "http://[fc00::1]/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://[2002:a9fe:a9fe::]/x",
        "http://2130706433/x",
        "http://0x7f.1/x",
        "http://localhost/x",
    ],
)
async def test_forbidden_addresses_are_refused(url: str) -> None:
    with pytest.raises(FetchRefused) as info:
        await NetworkGuard().check_url(url)
    assert "refusing to fetch" in info.value.message
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://example.com/", "http:///x"]
)
async def test_only_http_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(FetchRefused):
        await NetworkGuard(resolver=fake_resolver({})).check_url(url)


async def test_public_looking_name_resolving_to_loopback_is_refused() -> None:
    guard = NetworkGuard(resolver=fake_resolver({"cdn.example.com": ["127.0.0.1"]}))
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.1 is loopback"):
        await guard.check_url("https://cdn.example.com/file.png")


async def test_any_forbidden_answer_among_several_refuses() -> None:
    guard = NetworkGuard(resolver=fake_resolver({"cdn.example.com": ["93.184.216.34", "10.0.0.5"]}))
    with pytest.raises(FetchRefused, match=r"10\.0\.0\.5 is private"):
        await guard.check_url("https://cdn.example.com/file.png")


async def test_public_name_returns_the_checked_address() -> None:
    guard = NetworkGuard(resolver=fake_resolver({"cdn.example.com": ["93.184.216.34"]}))
    url, ip = await guard.check_url("https://cdn.example.com/file.png?sig=1")
    assert (url.host, ip) == ("cdn.example.com", "93.184.216.34")


async def test_unresolvable_name_is_refused() -> None:
    with pytest.raises(FetchRefused, match="does not resolve"):
        await NetworkGuard(resolver=fake_resolver({})).check_url("https://nowhere.example/x")


async def test_allowed_networks_open_private_ranges_including_mapped_forms() -> None:
    resolver = fake_resolver({"minio.internal": ["10.2.3.4"]})
    guard = NetworkGuard(["127.0.0.0/8", "10.0.0.0/8"], resolver=resolver)
    assert (await guard.check_url("http://127.0.0.1:9000/a"))[1] == "127.0.0.1"
    assert (await guard.check_url("http://[::ffff:127.0.0.1]/a"))[1] == "::ffff:7f00:1"
    assert (await guard.check_url("http://minio.internal/a"))[1] == "10.2.3.4"
    with pytest.raises(FetchRefused):
        await guard.check_url("http://169.254.169.254/")


def test_invalid_allowed_network_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="invalid allowed network"):
        NetworkGuard(["not-a-cidr"])


def test_redact_url_drops_credentials_query_and_fragment() -> None:
    assert redact_url("https://user:pw@cdn.example.com:8443/a/b.png?X-Amz-Signature=s#f") == (
        "https://cdn.example.com:8443/a/b.png"
    )


PUBLIC = {
    "cdn.example.com": ["93.184.216.34"],
    "other.example.net": ["93.184.216.35"],
    "evil.example.org": ["127.0.0.1"],
}


def client_for(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_connects_to_the_checked_ip_keeping_host_and_sni() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"payload")

    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    async with client_for(handler) as client:
        async with guarded_stream(client, "https://cdn.example.com/f.png?x=1", guard=guard) as response:
            assert await response.aread() == b"payload"
    (request,) = seen
    assert request.url.host == "93.184.216.34"
    assert request.url.path == "/f.png" and request.url.query == b"x=1"
    assert request.headers["host"] == "cdn.example.com"
    assert request.extensions["sni_hostname"] == "cdn.example.com"


async def test_redirects_are_followed_and_each_hop_checked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "cdn.example.com":
            return httpx.Response(302, headers={"location": "https://other.example.net/final.png"})
        return httpx.Response(200, content=b"final")

    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    async with client_for(handler) as client:
        async with guarded_stream(client, "https://cdn.example.com/a", guard=guard) as response:
            assert await response.aread() == b"final"
            assert response.request.url.host == "93.184.216.35"


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://evil.example.org/x",
        "http://[::ffff:10.0.0.1]/x",
        "file:///etc/passwd",
    ],
)
async def test_redirect_to_forbidden_target_is_refused_without_connecting(location: str) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"location": location})

    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    async with client_for(handler) as client:
        with pytest.raises(FetchRefused):
            async with guarded_stream(client, "https://cdn.example.com/a", guard=guard):
                pytest.fail("a refused redirect must not yield a response")
    assert hosts == ["93.184.216.34"]


async def test_redirects_are_capped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "/again"})

    calls = 0

    def counting(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return handler(request)

    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    async with client_for(counting) as client:
        with pytest.raises(FetchRefused, match="more than 3 redirects"):
            async with guarded_stream(client, "https://cdn.example.com/a", guard=guard, max_redirects=3):
                pass
    assert calls == 4


async def test_credentials_are_dropped_when_a_redirect_changes_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/start":
            return httpx.Response(302, headers={"location": "/same-host"})
        if request.url.path == "/same-host":
            return httpx.Response(307, headers={"location": "https://other.example.net/elsewhere"})
        return httpx.Response(200, content=b"ok")

    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    headers = {"Authorization": "Bearer secret", "X-Api-Key": "k"}
    async with client_for(handler) as client:
        async with guarded_stream(client, "https://cdn.example.com/start", guard=guard, headers=headers) as r:
            await r.aread()
    assert [req.url.path for req in seen] == ["/start", "/same-host", "/elsewhere"]
    assert seen[1].headers["authorization"] == "Bearer secret"
    assert "authorization" not in seen[2].headers and "x-api-key" not in seen[2].headers
    assert seen[2].headers["host"] == "other.example.net"


async def test_see_other_turns_a_post_into_a_get() -> None:
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        if request.url.path == "/submit":
            return httpx.Response(303, headers={"location": "/result"})
        return httpx.Response(200)

    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    async with client_for(handler) as client:
        async with guarded_stream(client, "https://cdn.example.com/submit", guard=guard, method="POST"):
            pass
    assert methods == ["POST", "GET"]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, grpc.StatusCode.FAILED_PRECONDITION),
        (403, grpc.StatusCode.FAILED_PRECONDITION),
        (503, grpc.StatusCode.UNAVAILABLE),
        (429, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_non_2xx_final_answer_is_a_domain_error(status: int, code: grpc.StatusCode) -> None:
    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    async with client_for(lambda request: httpx.Response(status)) as client:
        with pytest.raises(FetchFailed) as info:
            async with guarded_stream(client, "https://cdn.example.com/f.png?token=abc", guard=guard):
                pass
    assert info.value.status_code == status
    assert info.value.code == code
    assert f"HTTP {status}" in info.value.message
    assert "token" not in info.value.message


async def test_network_failure_is_a_domain_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    guard = NetworkGuard(resolver=fake_resolver(PUBLIC))
    async with client_for(handler) as client:
        with pytest.raises(FetchFailed, match="connection refused") as info:
            async with guarded_stream(client, "https://cdn.example.com/f.png", guard=guard):
                pass
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
