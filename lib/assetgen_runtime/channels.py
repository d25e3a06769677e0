"""gRPC client channels to peer services: one per peer per process."""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

from assetgen_runtime.server import GRPC_OPTIONS

__all__ = ["NOT_RETRIED", "open_channel"]

# Methods a repeat of which could do the work twice (a second box, API key, project, provider,
# model, or a second attempt of an asset): never retried by the channel. Every other method is
# idempotent, or made so by a key: SubmitTask by (asset, attempt) in the adapter's ledger, Generate
# by the gateway's request id (or the client's Idempotency-Key), RegisterUpload by the asset id.
NOT_RETRIED = (
    ("assetgen.v1.OrchestratorService", "CreateBox"),
    ("assetgen.v1.OrchestratorService", "RetryAsset"),
    ("assetgen.v1.AccessService", "CreateProject"),
    ("assetgen.v1.AccessService", "CreateApiKey"),
    ("assetgen.v1.ProviderAdapterService", "CreateProvider"),
    ("assetgen.v1.ProviderAdapterService", "CreateModel"),
)
_RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.25s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {"name": [{}], "retryPolicy": _RETRY_POLICY},
            # An exact method name overrides the default entry above: no retryPolicy, no retries.
            {"name": [{"service": service, "method": method} for service, method in NOT_RETRIED]},
        ],
    }
)


def open_channel(address: str, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()) -> grpc.aio.Channel:
    """An insecure channel to a peer inside the deployment, with keepalive and message limits.

    Calls are spread round-robin over every address the name resolves to: ``dns:///adapter:50053``
    naming a headless Service reaches every replica, ``ipv4:10.0.0.1:50053,10.0.0.2:50053`` a fixed
    list, and a plain ``host:port`` behaves as one address always did.

    A peer that restarts under us is bridged: service config retries UNAVAILABLE for up to a few
    seconds (on every method but ``NOT_RETRIED``), and a lost peer is reconnected every tenth of a
    second, so a call made just after it serves again finds it. ``interceptors`` see every call made
    on the channel.
    """
    return grpc.aio.insecure_channel(
        address,
        interceptors=list(interceptors) or None,
        options=[
            *GRPC_OPTIONS,
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            # Round-robin keeps reconnecting a lost peer on its own schedule (up to two minutes
            # apart by default). Between attempts every call fails at once, so the attempts must
            # come more often than the retries above (which wait a random 0 to 0.25, 0.5, 1, 1 s):
            # with attempts a second apart, a call right after a killed peer came back failed one
            # time in five; 100 ms apart, all four retries falling before the next attempt is a
            # chance of about 1 in 10,000. A refused connection every 100 ms costs nothing, and an
            # unanswered one waits out its connect timeout first.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 100),
        ],
    )
