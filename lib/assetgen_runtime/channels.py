"""gRPC client channels to peer services: one per peer per process."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from assetgen_runtime.server import GRPC_OPTIONS

__all__ = ["open_channel"]


def open_channel(address: str, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()) -> grpc.aio.Channel:
    """An insecure channel to a peer inside the deployment, with keepalive and message limits.

    Calls are spread round-robin over every address the name resolves to: ``dns:///adapter:50053``
    naming a headless Service reaches every replica, ``ipv4:10.0.0.1:50053,10.0.0.2:50053`` a fixed
    list, and a plain ``host:port`` behaves as one address always did.

    A peer that restarts under us is bridged: service config retries UNAVAILABLE for up to a few
    seconds, and a lost peer is reconnected every tenth of a second, so a call made just after it
    serves again finds it. ``interceptors`` see every call made on the channel.
    """
    service_config = (
        '{"loadBalancingConfig":[{"round_robin":{}}],'
        '"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":5,"initialBackoff":"0.25s",'
        '"maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}'
    )
    return grpc.aio.insecure_channel(
        address,
        interceptors=list(interceptors) or None,
        options=[
            *GRPC_OPTIONS,
            ("grpc.service_config", service_config),
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
