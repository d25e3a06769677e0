"""Polling tasks through the provider-adapter: the polls that come due together share one call.

Thousands of tasks are in flight at once, so polls are batched: those of one model that arrive
within a linger go to the adapter in one ``PollTasks`` call, one batcher per model (and linger), so
a slow provider never holds up another's polls. Each task's answer, or its own error, goes back to
the step that asked.
"""

from __future__ import annotations

import asyncio
from typing import TypeAlias

import grpc

from assetgen.v1 import provider_adapter_pb2, provider_adapter_pb2_grpc
from assetgen_runtime.batching import Batcher
from assetgen_runtime.errors import status_error

__all__ = ["POLL_BATCH", "TaskPolls"]

POLL_BATCH = 100
"""Most tasks one ``PollTasks`` call carries."""

PollBatcher: TypeAlias = Batcher[provider_adapter_pb2.PollTaskRequest, provider_adapter_pb2.TaskStatus]


class TaskPolls:
    """Polls tasks, batched per model, through the provider-adapter."""

    def __init__(
        self, adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub, *, rpc_timeout: float
    ) -> None:
        self._adapter = adapter
        self._rpc_timeout = rpc_timeout
        self._batchers: dict[tuple[str, float], PollBatcher] = {}

    async def poll(
        self, request: provider_adapter_pb2.PollTaskRequest, *, linger: float
    ) -> provider_adapter_pb2.TaskStatus:
        """What the provider says of the task, asked together with the polls of its model due within
        ``linger`` seconds; a gRPC error of its own is raised."""
        return await self._batcher(request.model, linger).load(request)

    def _batcher(self, model: str, linger: float) -> PollBatcher:
        key = (model, linger)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = Batcher(self._poll_many, max_batch=POLL_BATCH, linger=linger)
        return batcher

    async def _poll_many(
        self, requests: list[provider_adapter_pb2.PollTaskRequest]
    ) -> list[provider_adapter_pb2.TaskStatus | BaseException]:
        """Polls a batch in one PollTasks call; each task's error is raised to its own step."""
        try:
            response = await self._adapter.PollTasks(
                provider_adapter_pb2.PollTasksRequest(tasks=requests), timeout=self._rpc_timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            # An adapter older than PollTasks (during a rolling upgrade): one call per task.
            return await asyncio.gather(
                *(self._adapter.PollTask(request, timeout=self._rpc_timeout) for request in requests),
                return_exceptions=True,
            )
        return [
            result.status if result.HasField("status") else status_error(result.error)
            for result in response.results
        ]
