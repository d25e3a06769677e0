"""The services' shared HTTP clients keep no cookie from one request to the next."""

from __future__ import annotations

import httpx

from assetgen_runtime.http import cookieless_jar


async def test_a_cookie_set_by_one_response_is_not_sent_with_the_next_request() -> None:
    sent: list[str | None] = []

    def provider(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=account-a; Path=/"}, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(provider), cookies=cookieless_jar()) as client:
        await client.get("https://provider.test/tasks/1")
        await client.get("https://provider.test/tasks/2")
        assert len(client.cookies) == 0

    assert sent == [None, None]


async def test_a_plain_client_would_have_sent_it() -> None:
    sent: list[str | None] = []

    def provider(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=account-a; Path=/"}, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as client:
        await client.get("https://provider.test/tasks/1")
        await client.get("https://provider.test/tasks/2")

    assert sent == [None, "session=account-a"]
