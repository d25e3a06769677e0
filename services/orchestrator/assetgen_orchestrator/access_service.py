"""The AccessService gRPC servicer: projects, API keys, and checking a presented key.

Called by the gateway only, which decides who may call what (the admin scope for all of these but
AuthenticateKey) and writes the audit line naming the acting key.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from assetgen.v1 import common_pb2, gateway_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from assetgen_orchestrator.access import AccessStore
from assetgen_orchestrator.models import ApiKeyRow, ProjectRow

__all__ = ["AccessServicer", "key_to_proto", "project_to_proto"]


def _timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    # SQLite hands back naive datetimes; everything we store is UTC.
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return stamp


def project_to_proto(project: ProjectRow) -> common_pb2.Project:
    """The API's view of a project."""
    return common_pb2.Project(
        id=project.id,
        name=project.name,
        created_at=_timestamp(project.created_at),
        budget=project.budget or "",
    )


def key_to_proto(key: ApiKeyRow, secret: str = "") -> common_pb2.ApiKey:
    """The API's view of a key; ``secret`` (the whole key) only when it was just made."""
    return common_pb2.ApiKey(
        id=key.id,
        name=key.name,
        project=key.project_id,
        scopes=key.scopes.split(),
        created_at=_timestamp(key.created_at),
        revoked_at=_timestamp(key.revoked_at) if key.revoked_at else None,
        key=secret,
    )


class AccessServicer(orchestrator_pb2_grpc.AccessServiceServicer):
    """Projects and keys over gRPC, on :class:`AccessStore`."""

    def __init__(self, store: AccessStore) -> None:
        self._store = store

    async def CreateProject(
        self, request: gateway_pb2.CreateProjectRequest, context: object
    ) -> common_pb2.Project:
        return project_to_proto(await self._store.create_project(request.name, request.budget))

    async def ListProjects(
        self, request: gateway_pb2.ListProjectsRequest, context: object
    ) -> gateway_pb2.ListProjectsResponse:
        projects = await self._store.list_projects()
        return gateway_pb2.ListProjectsResponse(items=[project_to_proto(project) for project in projects])

    async def GetProject(self, request: gateway_pb2.GetProjectRequest, context: object) -> common_pb2.Project:
        return project_to_proto(await self._store.get_project(request.id))

    async def UpdateProject(
        self, request: gateway_pb2.UpdateProjectRequest, context: object
    ) -> common_pb2.Project:
        if request.HasField("budget"):
            project = await self._store.set_budget(request.id, request.budget)
            if not request.name:
                return project_to_proto(project)
        return project_to_proto(await self._store.rename_project(request.id, request.name))

    async def DeleteProject(
        self, request: gateway_pb2.DeleteProjectRequest, context: object
    ) -> gateway_pb2.DeleteProjectResponse:
        await self._store.delete_project(request.id)
        return gateway_pb2.DeleteProjectResponse()

    async def CreateApiKey(
        self, request: gateway_pb2.CreateApiKeyRequest, context: object
    ) -> common_pb2.ApiKey:
        row, key = await self._store.create_key(request.project, request.name, request.scopes)
        return key_to_proto(row, key)

    async def ListApiKeys(
        self, request: gateway_pb2.ListApiKeysRequest, context: object
    ) -> gateway_pb2.ListApiKeysResponse:
        keys = await self._store.list_keys(request.project)
        return gateway_pb2.ListApiKeysResponse(items=[key_to_proto(key) for key in keys])

    async def DeleteApiKey(
        self, request: gateway_pb2.DeleteApiKeyRequest, context: object
    ) -> gateway_pb2.DeleteApiKeyResponse:
        await self._store.revoke_key(request.id)
        return gateway_pb2.DeleteApiKeyResponse()

    async def AuthenticateKey(
        self, request: orchestrator_pb2.AuthenticateKeyRequest, context: object
    ) -> common_pb2.ApiKey:
        return key_to_proto(await self._store.authenticate(request.key))
