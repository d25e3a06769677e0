"""An uploaded object is deleted only when the orchestrator definitely refused its registration
(issue 22, item 4); an unknown outcome is retried and then the object is kept."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from assetgen.v1 import common_pb2, orchestrator_pb2, storage_pb2
from assetgen_gateway.upload_registration import register_upload

KEY = "boxes/box_1/ast_1/photo.png"
REQUEST = orchestrator_pb2.RegisterUploadRequest(
    asset_id="ast_1", box_id="box_1", filename="photo.png", object=common_pb2.StoredObject(key=KEY)
)


def _error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name.lower())


class FakeOrchestrator:
    """Answers RegisterUpload from a list (an exception is raised); counts the calls."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def RegisterUpload(self, request: Any, timeout: float) -> common_pb2.Asset:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


class FakeStorage:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def Delete(self, request: storage_pb2.DeleteRequest, timeout: float) -> storage_pb2.DeleteResponse:
        self.deleted.append(request.key)
        return storage_pb2.DeleteResponse()


async def _register(orchestrator: FakeOrchestrator, storage: FakeStorage) -> common_pb2.Asset:
    return await register_upload(
        orchestrator,  # type: ignore[arg-type]
        storage,  # type: ignore[arg-type]
        REQUEST,
        timeout=1.0,
        backoff=0.001,
    )


async def test_a_registration_that_timed_out_after_committing_keeps_the_object_and_gets_the_asset() -> None:
    # The first call committed but its answer came too late; the retry returns the same asset.
    asset = common_pb2.Asset(id="ast_1")
    orchestrator = FakeOrchestrator(_error(grpc.StatusCode.DEADLINE_EXCEEDED), asset)
    storage = FakeStorage()
    assert await _register(orchestrator, storage) == asset
    assert orchestrator.calls == 2 and storage.deleted == []


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN]
)
async def test_an_outcome_still_unknown_after_the_retries_keeps_the_object(code: grpc.StatusCode) -> None:
    orchestrator = FakeOrchestrator(_error(code))
    storage = FakeStorage()
    with pytest.raises(grpc.aio.AioRpcError):
        await _register(orchestrator, storage)
    assert orchestrator.calls == 3 and storage.deleted == []


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
    ],
)
async def test_a_definite_refusal_deletes_the_object_at_once(code: grpc.StatusCode) -> None:
    orchestrator = FakeOrchestrator(_error(code))
    storage = FakeStorage()
    with pytest.raises(grpc.aio.AioRpcError):
        await _register(orchestrator, storage)
    assert orchestrator.calls == 1 and storage.deleted == [KEY]


async def test_a_call_cut_short_keeps_the_object() -> None:
    orchestrator = FakeOrchestrator(asyncio.CancelledError())
    storage = FakeStorage()
    with pytest.raises(asyncio.CancelledError):
        await _register(orchestrator, storage)
    assert storage.deleted == []
