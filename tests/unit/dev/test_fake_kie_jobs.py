"""The one fake Kie.ai jobs provider: pluggable timing and results, and the statistics it keeps."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from assetgen_dev.fake_providers.kie_jobs import (
    FAIL_MESSAGE,
    FakeKieJobs,
    fixed,
    from_input,
    instant,
    kie_headers,
)
from assetgen_dev.fake_providers.media import SizedResults, result_block, write_result
from assetgen_dev.testing import eventually
from assetgen_dev.webhook_receiver import WebhookReceiver

KEY = "k"
MIB = 1024 * 1024


def test_timings() -> None:
    assert instant({"model": "m"}) == 0.0
    assert fixed(2.5)({"model": "m"}) == 2.5
    assert from_input({"model": "m", "input": {}}) == 0.0
    assert from_input({"model": "m", "input": {"finish_after": "3"}}) == 3.0
    assert from_input({"model": "m", "input": {"hold": True, "finish_after": 3}}) is None


def test_sized_results_are_png_headed_and_written_alike(tmp_path: Path) -> None:
    results = SizedResults(1000)
    small = results.file_for("m", {}, "p")
    assert (small.size, small.content_type, small.extension, small.whole) == (1000, "image/png", "png", True)
    assert small.body() == result_block()[:1000] and small.body().startswith(b"\x89PNG\r\n\x1a\n")
    large = results.file_for("m", {"size": 5 * MIB}, "p")
    assert not large.whole and [len(piece) for piece in large.pieces()] == [MIB] * 5
    path = tmp_path / "r.png"
    write_result(str(path), MIB + 7)
    assert path.read_bytes() == results.file_for("m", {"size": MIB + 7}, "p").body()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[FakeKieJobs], Any]]:
    started: list[FakeKieJobs] = []
    clients: list[httpx.AsyncClient] = []

    async def start(fake: FakeKieJobs) -> httpx.AsyncClient:
        started.append(fake)
        base_url = await fake.start()
        client = httpx.AsyncClient(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {KEY}"})
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.aclose()
    for fake in started:
        await fake.stop()


async def _create(client: httpx.AsyncClient, prompt: str = "p", **payload: Any) -> str:
    body = {"model": "bench/image", "input": {"prompt": prompt, **payload}}
    created = (await client.post("/api/v1/jobs/createTask", json=body)).json()
    assert created["code"] == 200, created
    return str(created["data"]["taskId"])


async def _record(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    answer = (await client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})).json()
    return dict(answer["data"])


async def test_polls_before_done_keeps_a_task_running(serve: Callable[[FakeKieJobs], Any]) -> None:
    fake = FakeKieJobs(KEY, polls_before_done=2)
    client = await serve(fake)
    task_id = await _create(client)
    assert fake.peak_running == 1
    assert [(await _record(client, task_id))["state"] for _ in range(3)] == [
        "generating",
        "generating",
        "success",
    ]
    assert fake.tasks[task_id].polls == 3 and fake.tasks[task_id].finished
    assert fake.stats()["submits"] == 1 and fake.stats()["polls"] == 3


async def test_a_fixed_delay_waits_then_generates_then_succeeds(serve: Callable[[FakeKieJobs], Any]) -> None:
    fake = FakeKieJobs(KEY, timing=fixed(3600), polls_before_done=0)
    client = await serve(fake)
    task_id = await _create(client)
    assert (await _record(client, task_id))["state"] == "waiting"
    fake.tasks[task_id].created_at -= 2000  # as if submitted 2000 s ago
    assert (await _record(client, task_id))["state"] == "generating"
    assert (await client.get(f"/files/{task_id}.png")).status_code == 404
    fake.tasks[task_id].finish_at = time.time()
    data = await _record(client, task_id)
    assert data["state"] == "success" and data["failCode"] == "" and data["failMsg"] == ""
    (url,) = json.loads(data["resultJson"])["resultUrls"]
    image = await client.get(url)
    assert image.headers["content-type"] == "image/png" and image.content == fake.tasks[task_id].result


async def test_fail_marker_reports_the_fail_message(serve: Callable[[FakeKieJobs], Any]) -> None:
    client = await serve(FakeKieJobs(KEY, polls_before_done=0))
    data = await _record(client, await _create(client, "x [fail]"))
    assert (data["state"], data["failCode"], data["failMsg"]) == ("fail", "400", FAIL_MESSAGE)


async def test_held_tasks_finish_when_released_and_stats_say_so(serve: Callable[[FakeKieJobs], Any]) -> None:
    fake = FakeKieJobs(KEY, timing=from_input, results=SizedResults(2048), polls_before_done=0)
    client = await serve(fake)
    held = [await _create(client, f"held {i}", hold=True) for i in range(2)]
    assert [(await _record(client, task))["state"] for task in held] == ["generating", "generating"]
    stats = (await client.get("/_demo/stats")).json()
    assert (stats["tasks"], stats["finished"], stats["polled_tasks"]) == (2, 0, 2)
    released = await client.post("/_demo/release", json={"at": time.time() - 1, "over": 0.5})
    assert released.json() == {"released": 2}
    later = await _create(client, "held later", hold=True)
    for task in [*held, later]:
        data = await _record(client, task)
        assert data["state"] == "success"
        result = await client.get(json.loads(data["resultJson"])["resultUrls"][0])
        assert len(result.content) == 2048
    tasks = {t["task_id"]: t for t in (await client.get("/_demo/tasks")).json()}
    assert tasks[held[0]]["finish_at"] < tasks[held[1]]["finish_at"]
    assert len(tasks[held[0]]["polls"]) == 2 and tasks[held[0]]["first_finished_poll"] is not None
    second_poll = tasks[held[0]]["polls"][1]
    recent = {t["task_id"]: t for t in (await client.get(f"/_demo/tasks?polls_since={second_poll}")).json()}
    assert recent[held[0]]["polls"] == [second_poll] and len(recent) == 3
    downloads = (await client.get("/_demo/downloads")).json()
    assert [d["bytes"] for d in downloads] == [2048] * 3 and all(d["end"] >= d["start"] for d in downloads)


async def test_large_results_are_streamed(serve: Callable[[FakeKieJobs], Any]) -> None:
    client = await serve(FakeKieJobs(KEY, results=SizedResults(1), polls_before_done=0))
    data = await _record(client, await _create(client, size=5 * MIB + 3))
    result = await client.get(json.loads(data["resultJson"])["resultUrls"][0])
    assert len(result.content) == 5 * MIB + 3 and result.content.startswith(b"\x89PNG")


async def test_wrong_key_and_unknown_tasks(serve: Callable[[FakeKieJobs], Any]) -> None:
    fake = FakeKieJobs(KEY)
    client = await serve(fake)
    wrong = {"Authorization": "Bearer nope"}
    answer = await client.post("/api/v1/jobs/createTask", json={"model": "m"}, headers=wrong)
    assert answer.json() == {"code": 401, "msg": "You do not have access permissions"}
    assert (await client.get("/api/v1/jobs/recordInfo", params={"taskId": "x"})).json()["code"] == 404
    assert (await client.post("/api/v1/jobs/createTask", json={"input": {}})).json()["code"] == 422
    assert fake.submits == 0 and fake.tasks == {}


async def test_finished_tasks_are_called_back_signed_as_kie_signs(
    serve: Callable[[FakeKieJobs], Any],
) -> None:
    hook = WebhookReceiver()
    await hook.start()
    try:
        fake = FakeKieJobs(KEY, timing=from_input, polls_before_done=0, callback_secret="hmac-key")
        client = await serve(fake)
        body = {"model": "bench/image", "callBackUrl": hook.url, "input": {"prompt": "p", "hold": True}}
        held = (await client.post("/api/v1/jobs/createTask", json=body)).json()["data"]["taskId"]
        quiet = await _create(client, "no callback url", finish_after=0)
        soon = (
            await client.post(
                "/api/v1/jobs/createTask", json={**body, "input": {"prompt": "q", "finish_after": 0.1}}
            )
        ).json()["data"]["taskId"]

        def called() -> list[str]:
            return [json.loads(item.body)["data"]["taskId"] for item in hook.received]

        await eventually(
            lambda: _value(called()), lambda ids: ids == [soon], what="the timed task's callback"
        )
        fake.release(time.time())
        await eventually(lambda: _value(called()), lambda ids: len(ids) == 2, what="the released task's")
        assert called() == [soon, held]
        for item, task_id in zip(hook.received, (soon, held), strict=True):
            assert (
                item.headers["x-webhook-signature"]
                == kie_headers("hmac-key", task_id, int(item.headers["x-webhook-timestamp"]))[
                    "X-Webhook-Signature"
                ]
            )
            assert json.loads(item.body)["data"]["state"] == "success"
            task = fake.tasks[task_id]
            assert task.callback_status == 200 and task.called_back_at is not None
            assert task.finish_at is not None and task.called_back_at >= task.finish_at
        assert fake.tasks[quiet].called_back_at is None  # its submission named no callBackUrl
        tasks = (await client.get("/_demo/tasks")).json()
        assert {t["task_id"]: t["callback_status"] for t in tasks} == {soon: 200, held: 200, quiet: 0}
    finally:
        await hook.stop()


async def _value(value: Any) -> Any:
    return value


def test_sized_results_with_a_seed_are_their_own_bytes_and_videos_are_mp4_headed() -> None:
    results = SizedResults(1000)
    one, other = results.file_for("m", {"seed": "a"}, "p"), results.file_for("m", {"seed": "b"}, "p")
    assert one.size == other.size == 1000 and one.body() != other.body()
    assert one.body() == results.file_for("m", {"seed": "a"}, "q").body()  # the seed decides, not the prompt
    assert one.body().startswith(b"\x89PNG\r\n\x1a\n") and one.content_type == "image/png"
    video = results.file_for("m", {"media": "video", "seed": "a", "size": 5 * MIB + 1}, "p")
    assert (video.content_type, video.extension, video.whole) == ("video/mp4", "mp4", False)
    body = video.body()
    assert len(body) == 5 * MIB + 1 and body[4:12] == b"ftypisom"
    assert body[MIB:] == b"".join(SizedResults(1).file_for("m", {"size": 5 * MIB + 1}, "p").pieces())[MIB:]


async def test_downloads_record_the_sha256_of_the_bytes_sent(serve: Callable[[FakeKieJobs], Any]) -> None:
    fake = FakeKieJobs(KEY, results=SizedResults(1), polls_before_done=0, digest_downloads=True)
    client = await serve(fake)
    for size in (1000, 5 * MIB + 3):
        task = await _create(client, size=size, seed=f"s{size}")
        data = await _record(client, task)
        body = (await client.get(json.loads(data["resultJson"])["resultUrls"][0])).content
        served = (await client.get("/_demo/downloads")).json()[-1]
        assert served["task_id"] == task and served["bytes"] == len(body) == size
        assert served["sha256"] == hashlib.sha256(body).hexdigest()
