"""Who is calling and what they may do: the caller of each request, the scope each RPC requires.

The gateway authenticates a request once (``auth``) and keeps its ``Caller`` in a context variable
for the rest of the request; ``REQUIRED_SCOPE`` is the one table of which scope every public RPC
needs. The caller's project travels to the orchestrator as ``x-assetgen-project`` metadata, added by
``ProjectMetadataInterceptor`` to every call on the orchestrator's channel, and the orchestrator
answers NOT_FOUND for another project's box or asset. Every RPC needing the admin scope leaves one
JSON line on the ``assetgen.audit`` logger naming the acting key's id (never its secret).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from assetgen_runtime.errors import AssetGenError, PermissionDenied, Unauthenticated, to_rpc_error
from assetgen_runtime.scopes import Scope, grants

__all__ = [
    "PROJECT_METADATA",
    "REQUIRED_SCOPE",
    "Caller",
    "ProjectMetadataInterceptor",
    "authorized",
    "current_caller",
    "use_caller",
]

audit_logger = logging.getLogger("assetgen.audit")

PROJECT_METADATA = "x-assetgen-project"

REQUIRED_SCOPE: dict[str, Scope] = {
    # Reading a project's boxes and assets, and what can be generated.
    "GetBox": Scope.READ,
    "ListBoxes": Scope.READ,
    "GetAsset": Scope.READ,
    "ListAssets": Scope.READ,
    "ListAssetHistory": Scope.READ,
    "GetUsage": Scope.READ,
    "WatchBox": Scope.READ,
    "WatchAsset": Scope.READ,
    "CreateWatchToken": Scope.READ,
    "ListPresets": Scope.READ,
    "ListModels": Scope.READ,
    "GetModel": Scope.READ,
    # Changing a project's boxes and assets.
    "CreateBox": Scope.WRITE,
    "UpdateBox": Scope.WRITE,
    "DeleteBox": Scope.WRITE,
    "Generate": Scope.WRITE,
    "Upload": Scope.WRITE,
    "CancelAsset": Scope.WRITE,
    "RetryAsset": Scope.WRITE,
    "DeleteAsset": Scope.WRITE,
    # A project's webhook endpoints: where its events go, and their delivery log.
    "CreateWebhook": Scope.WRITE,
    "ListWebhooks": Scope.WRITE,
    "GetWebhook": Scope.WRITE,
    "UpdateWebhook": Scope.WRITE,
    "DeleteWebhook": Scope.WRITE,
    "ListWebhookDeliveries": Scope.WRITE,
    "RedeliverWebhook": Scope.WRITE,
    # The deployment: providers (their URLs and keys), models, projects and keys.
    "CreateProvider": Scope.ADMIN,
    "GetProvider": Scope.ADMIN,
    "ListProviders": Scope.ADMIN,
    "UpdateProvider": Scope.ADMIN,
    "DeleteProvider": Scope.ADMIN,
    "CreateModel": Scope.ADMIN,
    "UpdateModel": Scope.ADMIN,
    "DeleteModel": Scope.ADMIN,
    "CreateProviderKey": Scope.ADMIN,
    "ListProviderKeys": Scope.ADMIN,
    "UpdateProviderKey": Scope.ADMIN,
    "DeleteProviderKey": Scope.ADMIN,
    "CreateProject": Scope.ADMIN,
    "ListProjects": Scope.ADMIN,
    "GetProject": Scope.ADMIN,
    "UpdateProject": Scope.ADMIN,
    "DeleteProject": Scope.ADMIN,
    "CreateApiKey": Scope.ADMIN,
    "ListApiKeys": Scope.ADMIN,
    "DeleteApiKey": Scope.ADMIN,
}
"""The scope each GatewayService RPC requires (a unit test checks that every RPC is listed)."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: which key, its project, its scopes.

    ``key_id`` names the key in logs and limits (``bootstrap:<fingerprint>`` for the tokens of the
    settings); ``watch_box`` is set for a watch token, which may only watch that box.
    """

    key_id: str
    project: str
    scopes: tuple[str, ...]
    watch_box: str = ""

    @property
    def reach(self) -> str:
        """The project the caller is confined to; '' for an admin, who reaches every project."""
        return "" if grants(self.scopes, Scope.ADMIN) else self.project


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("assetgen_caller", default=None)


def current_caller() -> Caller:
    """The caller of the request being served; Unauthenticated outside an authenticated request."""
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    return caller


def use_caller(caller: Caller) -> None:
    """Makes ``caller`` the current request's caller (the request's task and what it starts)."""
    _caller.set(caller)


@contextlib.contextmanager
def authorized(caller: Caller, rpc: str, target: str = "") -> Iterator[None]:
    """Runs the body if ``caller`` may call ``rpc``, else PermissionDenied; audits admin RPCs."""
    required = REQUIRED_SCOPE.get(rpc, Scope.ADMIN)
    audited = required is Scope.ADMIN
    if not grants(caller.scopes, required) or (caller.watch_box and rpc != "WatchBox"):
        if audited:
            _audit(caller, rpc, target, "denied")
        raise PermissionDenied(f"{rpc} needs the {required.value} scope")
    try:
        yield
    except BaseException as exc:
        if audited:
            known = isinstance(exc, AssetGenError | grpc.aio.AioRpcError)
            _audit(caller, rpc, target, to_rpc_error(exc)[0].name.lower() if known else "failed")
        raise
    if audited:
        _audit(caller, rpc, target, "ok")


def _audit(caller: Caller, rpc: str, target: str, outcome: str) -> None:
    audit_logger.info(
        "admin action",
        extra={
            "action": rpc,
            "key_id": caller.key_id,
            "project": caller.project,
            "target": target[:200],
            "outcome": outcome,
        },
    )


class ProjectMetadataInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the current caller's project to every call it sees, unless the caller is an admin."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        caller = _caller.get()
        if caller is not None and caller.reach:
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
            metadata.add(PROJECT_METADATA, caller.reach)
            client_call_details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                metadata,
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
        return await continuation(client_call_details, request)
