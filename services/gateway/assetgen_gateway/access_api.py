"""The public RPCs of projects, API keys and watch tokens, part of the GatewayService.

Projects and keys live in the orchestrator (``AccessService``); a watch token is made here, signed
with the gateway's secret, for a box the caller can see.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from assetgen.v1 import common_pb2, gateway_pb2, orchestrator_pb2_grpc
from assetgen_gateway.access import current_caller
from assetgen_gateway.watch_tokens import WatchTokenSigner
from assetgen_runtime.errors import Unavailable

__all__ = ["AccessRpcs"]


class AccessRpcs:
    """Projects, keys and watch tokens; mixed into ``GatewayApi``, which sets these attributes."""

    _access: orchestrator_pb2_grpc.AccessServiceStub | None
    _orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
    _watch_tokens: WatchTokenSigner | None
    _on_key_revoked: Callable[[str], None]
    _timeout: float

    def _require_access(self) -> orchestrator_pb2_grpc.AccessServiceStub:
        if self._access is None:
            raise Unavailable("projects and keys are not configured on this gateway")
        return self._access

    async def CreateWatchToken(
        self, request: gateway_pb2.CreateWatchTokenRequest, context: object
    ) -> gateway_pb2.CreateWatchTokenResponse:
        if self._watch_tokens is None:
            raise Unavailable("watch tokens are not configured on this gateway")
        caller = current_caller()
        # The orchestrator answers NOT_FOUND unless the caller's project holds the box.
        box = await self._orchestrator.GetBox(
            gateway_pb2.GetBoxRequest(id=request.box_id), timeout=self._timeout
        )
        token, expires_at = self._watch_tokens.issue(box.id, box.project, caller.key_id)
        stamp = Timestamp()
        stamp.FromNanoseconds(int(expires_at * 1e9))
        return gateway_pb2.CreateWatchTokenResponse(token=token, expires_at=stamp)

    async def CreateProject(
        self, request: gateway_pb2.CreateProjectRequest, context: object
    ) -> common_pb2.Project:
        return await self._require_access().CreateProject(request, timeout=self._timeout)

    async def ListProjects(
        self, request: gateway_pb2.ListProjectsRequest, context: object
    ) -> gateway_pb2.ListProjectsResponse:
        return await self._require_access().ListProjects(request, timeout=self._timeout)

    async def GetProject(self, request: gateway_pb2.GetProjectRequest, context: object) -> common_pb2.Project:
        return await self._require_access().GetProject(request, timeout=self._timeout)

    async def UpdateProject(
        self, request: gateway_pb2.UpdateProjectRequest, context: object
    ) -> common_pb2.Project:
        return await self._require_access().UpdateProject(request, timeout=self._timeout)

    async def DeleteProject(
        self, request: gateway_pb2.DeleteProjectRequest, context: object
    ) -> gateway_pb2.DeleteProjectResponse:
        return await self._require_access().DeleteProject(request, timeout=self._timeout)

    async def CreateApiKey(
        self, request: gateway_pb2.CreateApiKeyRequest, context: object
    ) -> common_pb2.ApiKey:
        return await self._require_access().CreateApiKey(request, timeout=self._timeout)

    async def ListApiKeys(
        self, request: gateway_pb2.ListApiKeysRequest, context: object
    ) -> gateway_pb2.ListApiKeysResponse:
        return await self._require_access().ListApiKeys(request, timeout=self._timeout)

    async def DeleteApiKey(
        self, request: gateway_pb2.DeleteApiKeyRequest, context: object
    ) -> gateway_pb2.DeleteApiKeyResponse:
        response = await self._require_access().DeleteApiKey(request, timeout=self._timeout)
        self._on_key_revoked(request.id)
        return response
