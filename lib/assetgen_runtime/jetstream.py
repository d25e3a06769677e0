"""NATS connections and idempotent JetStream set-up."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

__all__ = ["connect", "ensure_stream", "redact_url"]

logger = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """``url`` with every password (``nats://user:password@host``) replaced by ``***``, for logs."""
    return re.sub(r"(://[^:/@,\s]+):[^@,\s]*@", r"\1:***@", url)


async def connect(url: str, name: str, *, timeout: float = 30.0) -> Client:
    """Connects to NATS, retrying until ``timeout``; afterwards the client reconnects forever.

    ``url`` may name the nodes of a cluster, comma-separated: the client connects to any of them
    and moves to another when its node goes away.
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]

    async def on_disconnect() -> None:
        logger.warning("NATS disconnected")

    async def on_reconnect() -> None:
        logger.info("NATS reconnected")

    async def on_error(exc: Exception) -> None:
        logger.warning("NATS error: %s", exc)

    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                servers,
                name=name,
                connect_timeout=5,
                drain_timeout=5,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=on_error,
            )
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"cannot reach NATS at {redact_url(url)}: {exc}") from exc
            logger.warning("NATS not reachable yet (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Creates the stream, or brings an existing one to ``config``."""
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:
            pass  # another replica created it between our two calls
    await js.update_stream(config)
