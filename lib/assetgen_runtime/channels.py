"""gRPC client channels to peer services: one per peer per process."""

from __future__ import annotations

import grpc

from assetgen_runtime.server import GRPC_OPTIONS

__all__ = ["open_channel"]


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure channel to a peer inside the deployment, with keepalive and message limits.

    Calls are spread round-robin over every address the name resolves to: ``dns:///adapter:50053``
    naming a headless Service reaches every replica, ``ipv4:10.0.0.1:50053,10.0.0.2:50053`` a fixed
    list, and a plain ``host:port`` behaves as one address always did. Service config retries
    UNAVAILABLE a few times, which covers a peer restarting under us.
    """
    service_config = (
        '{"loadBalancingConfig":[{"round_robin":{}}],'
        '"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":4,"initialBackoff":"0.1s",'
        '"maxBackoff":"2s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}'
    )
    return grpc.aio.insecure_channel(
        address,
        options=[
            *GRPC_OPTIONS,
            ("grpc.service_config", service_config),
            ("grpc.enable_retries", 1),
            # Round-robin keeps reconnecting a lost peer on its own schedule (up to two minutes
            # apart by default); a peer that restarts or starts after its caller is back in use
            # within a second.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ],
    )
