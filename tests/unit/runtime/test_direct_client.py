"""DirectClient.send_direct: the client's requests, sent without the client's per-response layers."""

from __future__ import annotations

import json

import httpx
import pytest

from assetgen_runtime.http import DirectClient


def _provider(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/moved":
        return httpx.Response(302, headers={"location": "/tasks/1"})
    return httpx.Response(
        200,
        headers={"set-cookie": "session=account-a; Path=/"},
        json={"agent": request.headers["user-agent"], "auth": request.headers.get("authorization")},
    )


async def test_the_request_keeps_the_clients_headers_and_the_body_arrives_unread() -> None:
    async with DirectClient(
        transport=httpx.MockTransport(_provider), headers={"User-Agent": "unit/1"}
    ) as client:
        request = client.build_request(
            "GET", "https://provider.test/tasks/1", headers={"Authorization": "Bearer k"}
        )
        response = await client.send_direct(request)
        try:
            body = json.loads(await response.aread())
        finally:
            await response.aclose()

    assert response.status_code == 200
    assert response.request is request
    assert body == {"agent": "unit/1", "auth": "Bearer k"}


async def test_no_cookie_is_kept_no_redirect_followed_and_no_hook_called() -> None:
    hooked: list[httpx.Response] = []

    async def hook(response: httpx.Response) -> None:
        hooked.append(response)

    async with DirectClient(
        transport=httpx.MockTransport(_provider), follow_redirects=True, event_hooks={"response": [hook]}
    ) as client:
        first = await client.send_direct(client.build_request("GET", "https://provider.test/tasks/1"))
        moved = await client.send_direct(client.build_request("GET", "https://provider.test/moved"))
        assert len(client.cookies) == 0
        # The same client's send() does all three, so the test would see it if send_direct did.
        await client.get("https://provider.test/moved")
        assert len(client.cookies) == 1

    assert (first.status_code, moved.status_code) == (200, 302)
    assert len(hooked) == 2  # the redirect and its target, both from client.get


async def test_a_closed_client_refuses_to_send() -> None:
    client = DirectClient(transport=httpx.MockTransport(_provider))
    request = client.build_request("GET", "https://provider.test/tasks/1")
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.send_direct(request)


def test_mounts_are_refused_as_they_would_be_bypassed() -> None:
    with pytest.raises(TypeError, match="mounts"):
        DirectClient(transport=httpx.MockTransport(_provider), mounts={"https://other.test": None})
