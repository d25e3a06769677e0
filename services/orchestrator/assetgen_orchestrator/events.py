"""Status events: every transition of an asset is published to JetStream for live watchers.

Subject ``assetgen.events.<box>.<asset>``; the stream keeps events for a bounded age. The gateway
replays and follows them; the orchestrator never talks to watchers itself.

Events for admins, about no asset, go to ``assetgen.events.admin.<type>`` (no box id is ``admin``):
``provider.key_disabled`` when a provider refused a pool key (401/402/403) and the adapter disabled
it. They are stored in the same stream, so an operator's tool can replay them.

Events go out as plain NATS publishes, which the stream stores like any other, without waiting for
JetStream's acknowledgement: an event that could not be stored could not be sent again anyway (the
state it reports is in SQL, where a watcher's snapshot reads it), and waiting would cost every
transition a round trip and the parsing of its answer. While NATS is away, events wait in the
client's reconnect buffer.
"""

from __future__ import annotations

import json
import logging

from nats.aio.client import Client

from assetgen.v1 import provider_adapter_pb2
from assetgen_orchestrator.models import AssetRow, utcnow

__all__ = ["KEY_DISABLED", "EventPublisher", "admin_subject", "event_subject"]

logger = logging.getLogger(__name__)


KEY_DISABLED = "provider.key_disabled"
"""The admin event of a pool key the provider refused, disabled by the adapter."""


def event_subject(box_id: str, asset_id: str) -> str:
    """The subject an asset's events are published on."""
    return f"assetgen.events.{box_id}.{asset_id}"


def admin_subject(event_type: str) -> str:
    """The subject an admin event of ``event_type`` is published on."""
    return f"assetgen.events.admin.{event_type.replace('.', '_')}"


class EventPublisher:
    """Publishes asset snapshots after each transition."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc

    async def publish(self, asset: AssetRow, *, file_url: str = "") -> None:
        """Publishes the asset's current state; a failure is logged, never fails the transition."""
        body = {
            "asset_id": asset.id,
            "box_id": asset.box_id,
            "status": asset.status,
            "step": asset.step,
            "attempt": asset.attempt,
            "progress": asset.progress,
            "external_task_id": asset.external_task_id,
            "file_url": file_url,
            "error_message": asset.error_message,
            "version": asset.version,
            "at": utcnow().isoformat(),
        }
        try:
            await self._nc.publish(event_subject(asset.box_id, asset.id), json.dumps(body).encode())
        except Exception as exc:
            logger.warning("could not publish asset event: %s", exc, extra={"asset_id": asset.id})

    async def key_disabled(self, disabled: provider_adapter_pb2.KeyDisabled, *, asset_id: str) -> None:
        """Announces a pool key the provider refused (found submitting ``asset_id``), for admins."""
        body = {
            "type": KEY_DISABLED,
            "provider": disabled.provider,
            "key_id": disabled.key_id,
            "key_name": disabled.key_name,
            "error": disabled.error,
            "asset_id": asset_id,
            "at": utcnow().isoformat(),
        }
        logger.warning(
            "provider API key disabled: the provider refused it",
            extra={"provider": disabled.provider, "key_id": disabled.key_id, "asset_id": asset_id},
        )
        try:
            await self._nc.publish(admin_subject(KEY_DISABLED), json.dumps(body).encode())
        except Exception as exc:
            logger.warning("could not publish a key event: %s", exc, extra={"key_id": disabled.key_id})
