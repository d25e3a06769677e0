"""The provider-adapter over real gRPC, with a real catalog database and the Kie.ai-shaped demo provider."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2, provider_adapter_pb2_grpc
from assetgen_dev.demo_provider import start_demo_provider
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.engine import RetryPolicy
from assetgen_provider_adapter.main import run_server
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_runtime.server import RunningService
from assetgen_runtime.settings import load

TASK = provider_adapter_pb2
IMAGE_TEMPLATE = {
    "model": "google/nano-banana",
    "callBackUrl": "{{callback_url?}}",
    "input": {
        "prompt": "{{prompt}}",
        "image_urls": "{{image_urls?}}",
        "output_format": "png",
        "aspect_ratio": "{{aspect_ratio?}}",
    },
}
VIDEO_TEMPLATE = {
    "model": "bytedance/seedance-1.5-pro-video",
    "input": {"prompt": "{{prompt}}", "input_urls": ["{{image_url}}"], "duration": "{{duration}}"},
}


class Demo:
    """A running demo provider."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"{self.base_url}/_demo/stats")).json()


async def _demo_provider(delay: float) -> AsyncIterator[Demo]:
    """A demo provider with its own key whose tasks finish after ``delay`` seconds."""
    api_key = f"key-{uuid.uuid4().hex}"
    runner, base_url = await start_demo_provider("127.0.0.1", 0, api_key, delay)
    yield Demo(base_url, api_key)
    await runner.cleanup()


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    async for provider in _demo_provider(0.3):
        yield provider


@pytest.fixture
async def adapter(
    database_url: str, tmp_path: Path
) -> AsyncIterator[provider_adapter_pb2_grpc.ProviderAdapterServiceStub]:
    settings = load(
        ProviderAdapterSettings,
        environ={},
        catalog_database_url=database_url,
        data_dir=str(tmp_path / "data"),
        secret_key="integration-test-secret",
        allowed_fetch_networks=("127.0.0.0/8",),  # the fake providers listen on loopback
        shutdown_grace_seconds=1.0,
    )
    service: RunningService = await run_server(
        settings, port=0, retry_policy=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05), cache_ttl=1.0
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield provider_adapter_pb2_grpc.ProviderAdapterServiceStub(channel)
    finally:
        await channel.close()
        await service.stop()


async def _provider(stub: Any, demo: Demo, *, api_key: str | None = None) -> common_pb2.Provider:
    return await stub.CreateProvider(
        gateway_pb2.CreateProviderRequest(
            name=f"kie-{uuid.uuid4().hex[:8]}",
            preset="kie-ai",
            base_url=demo.base_url,
            api_key=demo.api_key if api_key is None else api_key,
        ),
        timeout=10,
    )


async def _model(
    stub: Any, provider: common_pb2.Provider, template: Any = None, *, video: bool = False
) -> common_pb2.Model:
    return await stub.CreateModel(
        gateway_pb2.CreateModelRequest(
            provider=provider.name,
            name=f"model-{uuid.uuid4().hex[:8]}",
            model_type=common_pb2.MODEL_TYPE_VIDEO if video else common_pb2.MODEL_TYPE_IMAGE,
            request_schema_json=json.dumps(template or (VIDEO_TEMPLATE if video else IMAGE_TEMPLATE)),
        ),
        timeout=10,
    )


async def _poll_until_done(
    stub: Any, model: str, status: provider_adapter_pb2.TaskStatus
) -> provider_adapter_pb2.TaskStatus:
    async def poll() -> provider_adapter_pb2.TaskStatus:
        return await stub.PollTask(
            TASK.PollTaskRequest(
                asset_id="a", model=model, task_id=status.task_id, task_handle_json=status.task_handle_json
            ),
            timeout=10,
        )

    return await eventually(
        poll,
        lambda s: s.state in (TASK.TASK_STATE_COMPLETED, TASK.TASK_STATE_FAILED),
        timeout=20,
        what="terminal state",
    )


async def test_image_generation_completes_with_a_real_png_and_submits_once(adapter: Any, demo: Demo) -> None:
    provider = await _provider(adapter, demo)
    model = await _model(adapter, provider)

    prepared = await adapter.PrepareGeneration(
        TASK.PrepareGenerationRequest(model=model.id, variables_json=json.dumps({"prompt": "a red fox"})),
        timeout=10,
    )
    assert prepared.model.name == model.name
    assert prepared.poll_policy.initial_delay_ms == 3000
    assert prepared.poll_policy.deadline_ms == 15 * 60_000

    request = TASK.SubmitTaskRequest(
        asset_id=f"ast_{uuid.uuid4().hex}",
        attempt=1,
        model=model.name,
        variables_json=json.dumps(
            {"prompt": 'a "red" fox\nunicode ✓', "aspect_ratio": "1:1", "image_urls": None}
        ),
    )
    submitted = await adapter.SubmitTask(request, timeout=10)
    assert submitted.state == TASK.TASK_STATE_PROCESSING
    assert submitted.task_id.startswith("task_demo_")
    assert submitted.poll_policy.max_delay_ms == 30_000

    again = await adapter.SubmitTask(request, timeout=10)
    assert again.task_id == submitted.task_id
    stats = await demo.stats()
    assert stats["submits"] == 1
    assert stats["last_submit"] == {
        "model": "google/nano-banana",
        "input": {"prompt": 'a "red" fox\nunicode ✓', "output_format": "png", "aspect_ratio": "1:1"},
    }

    done = await _poll_until_done(adapter, model.name, submitted)
    assert done.state == TASK.TASK_STATE_COMPLETED, done.error_message
    assert done.raw_state == "success"
    assert len(done.outputs) == 1
    async with httpx.AsyncClient(timeout=10) as client:
        content = (await client.get(done.outputs[0].url)).content
    assert content.startswith(b"\x89PNG\r\n\x1a\n")


async def test_video_generation_yields_an_mp4(adapter: Any, demo: Demo) -> None:
    provider = await _provider(adapter, demo)
    model = await _model(adapter, provider, video=True)
    submitted = await adapter.SubmitTask(
        TASK.SubmitTaskRequest(
            asset_id=f"ast_{uuid.uuid4().hex}",
            attempt=1,
            model=model.id,
            variables_json=json.dumps(
                {"prompt": "waves", "image_url": f"{demo.base_url}/x.png", "duration": "5"}
            ),
        ),
        timeout=10,
    )
    assert (await demo.stats())["last_submit"]["input"]["duration"] == "5"
    done = await _poll_until_done(adapter, model.id, submitted)
    assert done.state == TASK.TASK_STATE_COMPLETED
    async with httpx.AsyncClient(timeout=10) as client:
        content = (await client.get(done.outputs[0].url)).content
    assert content[4:8] == b"ftyp"


async def test_failed_task_reports_the_providers_message(adapter: Any, demo: Demo) -> None:
    provider = await _provider(adapter, demo)
    model = await _model(adapter, provider)
    submitted = await adapter.SubmitTask(
        TASK.SubmitTaskRequest(
            asset_id=f"ast_{uuid.uuid4().hex}",
            attempt=1,
            model=model.name,
            variables_json=json.dumps({"prompt": "please [fail]"}),
        ),
        timeout=10,
    )
    done = await _poll_until_done(adapter, model.name, submitted)
    assert done.state == TASK.TASK_STATE_FAILED
    assert "[fail]" in done.error_message
    assert done.error_code == "400"
    assert not done.outputs


async def test_wrong_api_key_disables_it_and_then_fails_with_kies_message(adapter: Any, demo: Demo) -> None:
    # The provider's own key is its pool's first key: refused, it is disabled (announced once) and
    # the work held back for another key; with none left, submissions fail naming the refusal.
    provider = await _provider(adapter, demo, api_key="not-the-key")
    model = await _model(adapter, provider)

    def submit() -> Any:
        return adapter.SubmitTask(
            TASK.SubmitTaskRequest(
                asset_id=f"ast_{uuid.uuid4().hex}",
                attempt=1,
                model=model.name,
                variables_json=json.dumps({"prompt": "x"}),
            ),
            timeout=10,
        )

    held = await submit()
    assert held.state == TASK.TASK_STATE_PENDING
    assert (held.key_disabled.provider, held.key_disabled.key_name) == (provider.name, "default")
    assert held.key_disabled.error == "401: You do not have access permissions"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit()
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == (
        f"no usable API key for provider {provider.name}: 401: You do not have access permissions"
    )
    assert (await demo.stats())["submits"] == 0


async def test_prepare_names_every_missing_variable_and_unknown_models(adapter: Any, demo: Demo) -> None:
    provider = await _provider(adapter, demo)
    model = await _model(adapter, provider, video=True)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await adapter.PrepareGeneration(
            TASK.PrepareGenerationRequest(model=model.name, variables_json="{}"), timeout=10
        )
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "duration" in missing.value.details() and "image_url" in missing.value.details()
    assert "prompt" in missing.value.details()

    deferred = await adapter.PrepareGeneration(
        TASK.PrepareGenerationRequest(
            model=model.name,
            variables_json='{"prompt": "p", "duration": "5"}',
            deferred_variables=["image_url"],
        ),
        timeout=10,
    )
    assert deferred.model.id == model.id

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await adapter.PrepareGeneration(
            TASK.PrepareGenerationRequest(model="nope", variables_json="{}"), timeout=10
        )
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.details() == "unknown model 'nope'"


async def test_catalog_lookups_and_validation(adapter: Any, demo: Demo) -> None:
    presets = await adapter.ListPresets(gateway_pb2.ListPresetsRequest(), timeout=10)
    assert "kie-ai" in [preset.name for preset in presets.items]

    provider = await _provider(adapter, demo)
    assert provider.has_api_key and provider.id.startswith("prv_")
    assert demo.api_key not in str(provider)
    assert (
        await adapter.GetProvider(gateway_pb2.GetProviderRequest(id=provider.id), timeout=10)
    ).name == provider.name
    listed = await adapter.ListProviders(gateway_pb2.ListProvidersRequest(), timeout=10)
    assert provider.name in [item.name for item in listed.items]
    assert demo.api_key not in str(listed)

    default_url = await adapter.CreateProvider(
        gateway_pb2.CreateProviderRequest(name=f"kie-{uuid.uuid4().hex[:8]}", preset="kie-ai"), timeout=10
    )
    assert default_url.base_url == "https://api.kie.ai" and not default_url.has_api_key

    async def code_of(call: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        return error.value.code()

    duplicate = gateway_pb2.CreateProviderRequest(name=provider.name, preset="kie-ai", api_key="k")
    assert await code_of(adapter.CreateProvider(duplicate, timeout=10)) == grpc.StatusCode.ALREADY_EXISTS
    bad_preset = gateway_pb2.CreateProviderRequest(name="other", preset="nope")
    assert await code_of(adapter.CreateProvider(bad_preset, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    missing = gateway_pb2.GetProviderRequest(id="prv_missing")
    assert await code_of(adapter.GetProvider(missing, timeout=10)) == grpc.StatusCode.NOT_FOUND

    model = await _model(adapter, provider)
    assert list(model.variables) == ["callback_url", "prompt", "image_urls", "aspect_ratio"]
    assert list(model.required_variables) == ["prompt"]
    assert model.provider == provider.name
    assert (await adapter.GetModel(gateway_pb2.GetModelRequest(id=model.name), timeout=10)).id == model.id
    only = await adapter.ListModels(gateway_pb2.ListModelsRequest(provider=provider.id), timeout=10)
    assert [item.name for item in only.items] == [model.name]
    for schema in ('"text"', "42", "not json"):
        bad = gateway_pb2.CreateModelRequest(
            provider=provider.name,
            name=f"m-{uuid.uuid4().hex[:6]}",
            model_type=common_pb2.MODEL_TYPE_IMAGE,
            request_schema_json=schema,
        )
        assert await code_of(adapter.CreateModel(bad, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    after = await adapter.ListModels(gateway_pb2.ListModelsRequest(provider=provider.name), timeout=10)
    assert len(after.items) == 1
    dup_model = gateway_pb2.CreateModelRequest(
        provider=provider.name,
        name=model.name,
        model_type=common_pb2.MODEL_TYPE_IMAGE,
        request_schema_json="{}",
    )
    assert await code_of(adapter.CreateModel(dup_model, timeout=10)) == grpc.StatusCode.ALREADY_EXISTS


async def test_health_and_reflection(database_url: str, tmp_path: Path) -> None:
    settings = load(
        ProviderAdapterSettings, environ={}, catalog_database_url=database_url, data_dir=str(tmp_path)
    )
    service = await run_server(settings, port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(
            health_pb2.HealthCheckRequest(service="assetgen.v1.ProviderAdapterService"), timeout=5
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [
            service.name
            async for response in responses
            for service in response.list_services_response.service
        ]
        assert "assetgen.v1.ProviderAdapterService" in names
        assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    finally:
        await channel.close()
        await service.stop()


@pytest.fixture
async def slow_demo() -> AsyncIterator[Demo]:
    """A demo provider whose tasks stay ``waiting`` for the whole test, so every poll answers the same."""
    async for provider in _demo_provider(600.0):
        yield provider


async def _submitted(stub: Any, model: common_pb2.Model, prompt: str = "x") -> TASK.PollTaskRequest:
    """A task submitted to ``model``, as the PollTaskRequest that polls it."""
    asset_id = f"ast_{uuid.uuid4().hex}"
    status = await stub.SubmitTask(
        TASK.SubmitTaskRequest(
            asset_id=asset_id, attempt=1, model=model.name, variables_json=json.dumps({"prompt": prompt})
        ),
        timeout=10,
    )
    return TASK.PollTaskRequest(
        asset_id=asset_id, model=model.name, task_id=status.task_id, task_handle_json=status.task_handle_json
    )


async def test_poll_tasks_answers_each_task_in_order_and_fails_only_the_bad_ones(
    adapter: Any, demo: Demo, slow_demo: Demo
) -> None:
    running = await _model(adapter, await _provider(adapter, slow_demo))
    finishing = await _model(adapter, await _provider(adapter, demo))
    first, second = await _submitted(adapter, running), await _submitted(adapter, running)
    done = await _submitted(adapter, finishing)
    unknown = TASK.PollTaskRequest(asset_id="a", model="nope", task_id="t")
    no_task = TASK.PollTaskRequest(asset_id="a", model=running.name)
    batch = TASK.PollTasksRequest(tasks=[first, unknown, done, second, no_task])

    async def poll_batch() -> TASK.PollTasksResponse:
        return await adapter.PollTasks(batch, timeout=10)

    answer = await eventually(
        poll_batch,
        lambda a: a.results[2].status.state == TASK.TASK_STATE_COMPLETED,
        timeout=20,
        what="the finishing task seen COMPLETED within the batch",
    )
    assert len(answer.results) == 5
    assert [result.WhichOneof("result") for result in answer.results] == [
        "status",
        "error",
        "status",
        "status",
        "error",
    ]
    # Each answer is exactly what PollTask says of that task.
    assert answer.results[0].status == await adapter.PollTask(first, timeout=10)
    assert answer.results[3].status == await adapter.PollTask(second, timeout=10)
    assert answer.results[0].status.task_id == first.task_id
    assert answer.results[3].status.task_id == second.task_id
    assert answer.results[0].status.state == TASK.TASK_STATE_PENDING
    assert answer.results[2].status.outputs[0].url.startswith(demo.base_url)
    # Each error is the status PollTask fails with, its code as google.rpc.Code's number.
    assert answer.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answer.results[1].error.message == "unknown model 'nope'"
    with pytest.raises(grpc.aio.AioRpcError) as single:
        await adapter.PollTask(unknown, timeout=10)
    assert (single.value.code(), single.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        answer.results[1].error.message,
    )
    assert answer.results[4].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answer.results[4].error.message == "task_id is required"


async def test_poll_tasks_reports_an_unreachable_provider_per_task(adapter: Any, slow_demo: Demo) -> None:
    reachable = await _model(adapter, await _provider(adapter, slow_demo))
    task = await _submitted(adapter, reachable)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        gone = await adapter.CreateProvider(
            gateway_pb2.CreateProviderRequest(
                name=f"gone-{uuid.uuid4().hex[:8]}",
                preset="kie-ai",
                base_url=f"http://127.0.0.1:{closed.getsockname()[1]}",
                api_key="k",
            ),
            timeout=10,
        )
        lost = await _model(adapter, gone)
        answer = await adapter.PollTasks(
            TASK.PollTasksRequest(
                tasks=[TASK.PollTaskRequest(asset_id="a", model=lost.name, task_id="t_1"), task]
            ),
            timeout=10,
        )
    finally:
        closed.close()
    assert answer.results[0].error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert f"provider {gone.name} unreachable" in answer.results[0].error.message
    assert answer.results[1].status.task_id == task.task_id


async def test_poll_tasks_takes_at_most_a_thousand_tasks(adapter: Any) -> None:
    def batch(size: int) -> TASK.PollTasksRequest:
        return TASK.PollTasksRequest(
            tasks=[TASK.PollTaskRequest(asset_id="a", model="nope", task_id=f"t{i}") for i in range(size)]
        )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await adapter.PollTasks(batch(1001), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1000 tasks" in (refused.value.details() or "")
    full = await adapter.PollTasks(batch(1000), timeout=30)
    assert len(full.results) == 1000
    assert {result.error.code for result in full.results} == {grpc.StatusCode.INVALID_ARGUMENT.value[0]}
    assert not (await adapter.PollTasks(TASK.PollTasksRequest(), timeout=10)).results
