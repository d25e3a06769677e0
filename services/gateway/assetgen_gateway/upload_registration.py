"""Registering an uploaded object as an asset: retried while its outcome is unknown, the object
deleted only when the orchestrator definitely refused it.

The orchestrator's RegisterUpload is idempotent by the asset id the gateway minted (the object key
contains it): a retry of a registration that committed returns the same asset. So an answer that
says nothing about the outcome (UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN, a cancelled call) is never
a reason to delete the object — the asset may already point at it. Only a refusal (the box is gone,
the caller may not, the request is malformed) frees it.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from assetgen.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc

__all__ = ["DEFINITE_REFUSALS", "register_upload"]

logger = logging.getLogger(__name__)

# Answers after which the orchestrator certainly holds no asset for the object.
DEFINITE_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


async def register_upload(
    orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub,
    storage: storage_pb2_grpc.StorageServiceStub,
    request: orchestrator_pb2.RegisterUploadRequest,
    *,
    timeout: float,
    attempts: int = 3,
    backoff: float = 0.25,
) -> common_pb2.Asset:
    """The registered asset; a refusal deletes the stored object, an unknown outcome keeps it."""
    key = request.object.key
    for attempt in range(1, attempts + 1):
        try:
            return await orchestrator.RegisterUpload(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in DEFINITE_REFUSALS:
                await storage.Delete(storage_pb2.DeleteRequest(key=key), timeout=timeout)
                raise
            if attempt == attempts:
                _kept(request, f"{error.code().name}: {error.details()}")
                raise
            logger.info(
                "upload registration outcome unknown; retrying",
                extra={"asset_id": request.asset_id, "object_key": key, "code": error.code().name},
            )
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
        except BaseException as exc:
            # The call itself was cut short (the client went away): the orchestrator may have it.
            _kept(request, type(exc).__name__)
            raise
    raise AssertionError("unreachable")  # the loop always returns or raises


def _kept(request: orchestrator_pb2.RegisterUploadRequest, why: str) -> None:
    logger.warning(
        "upload registration outcome unknown; stored object kept (an asset may point at it)",
        extra={"asset_id": request.asset_id, "object_key": request.object.key, "problem": why},
    )
