"""Live asset events for watchers, read from the orchestrator's JetStream events stream.

Each watcher gets its own ephemeral *ordered* consumer filtered to what it watches, so watchers cost
the orchestrator nothing and the gateway keeps no state between connections. A new watcher first
gets a snapshot of the current state, stamped with the stream's last sequence at that moment; a
watcher resuming after sequence N gets every event from N+1 (deliver by start sequence), so nothing
published in between is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from assetgen.v1 import common_pb2, gateway_pb2
from assetgen_runtime.errors import InvalidArgument, Unavailable
from assetgen_runtime.jsontext import parse_json_object

__all__ = [
    "EVENTS_STREAM",
    "EventWatcher",
    "Snapshot",
    "asset_subject",
    "box_subject",
    "event_from_json",
    "is_terminal",
    "snapshot_event",
]

logger = logging.getLogger(__name__)

# The orchestrator's events stream and subject layout (assetgen.events.<box>.<asset>).
EVENTS_STREAM = "ASSETGEN_EVENTS"
_SUBJECT_PREFIX = "assetgen.events"
# Ids become subject tokens, so anything that could widen the filter ('.', '*', '>') is refused.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_TERMINAL = frozenset(
    {common_pb2.ASSET_STATUS_COMPLETED, common_pb2.ASSET_STATUS_FAILED, common_pb2.ASSET_STATUS_CANCELED}
)

_CLOSED = object()

Snapshot = Callable[[], Awaitable[Sequence[common_pb2.Asset]]]


def _checked(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise InvalidArgument(f"invalid {kind} id {value!r}")
    return value


def box_subject(box_id: str) -> str:
    """The filter matching every event of a box's assets."""
    return f"{_SUBJECT_PREFIX}.{_checked('box', box_id)}.>"


def asset_subject(asset_id: str) -> str:
    """The filter matching every event of one asset, whatever its box."""
    return f"{_SUBJECT_PREFIX}.*.{_checked('asset', asset_id)}"


def is_terminal(event: gateway_pb2.AssetEvent) -> bool:
    """Whether the event's status ends the asset's life (until a retry)."""
    return event.status in _TERMINAL


def event_from_json(body: bytes, sequence: int) -> gateway_pb2.AssetEvent:
    """The AssetEvent of one orchestrator event body (see assetgen_orchestrator.events)."""
    data = parse_json_object(body, "event body")
    event = gateway_pb2.AssetEvent(
        asset_id=str(data.get("asset_id", "")),
        box_id=str(data.get("box_id", "")),
        progress=float(data.get("progress") or 0.0),
        file_url=str(data.get("file_url") or ""),
        error_message=str(data.get("error_message") or ""),
        sequence=sequence,
        attempt=int(data.get("attempt") or 0),
    )
    status = str(data.get("status") or "")
    if status:
        event.status = common_pb2.AssetStatus.Value(f"ASSET_STATUS_{status}")
    if data.get("at"):
        event.at.FromDatetime(dt.datetime.fromisoformat(data["at"]))
    return event


def snapshot_event(asset: common_pb2.Asset, sequence: int) -> gateway_pb2.AssetEvent:
    """An AssetEvent with the asset's current state, stamped with the stream position it reflects."""
    event = gateway_pb2.AssetEvent(
        asset_id=asset.id,
        box_id=asset.box,
        status=asset.status,
        progress=asset.progress,
        file_url=asset.file_url,
        error_message=asset.error_message,
        sequence=sequence,
        attempt=asset.attempt,
        snapshot=True,
    )
    event.at.CopyFrom(asset.updated_at)
    return event


class EventWatcher:
    """Opens filtered, ordered JetStream consumers on the events stream for watchers."""

    def __init__(self, js: JetStreamContext, *, heartbeat: float = 15.0) -> None:
        self._js = js
        self.heartbeat = heartbeat
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Ends every watch now (at shutdown): clients resume elsewhere from their last event id."""
        self._closing.set()

    async def _next(self, subscription: JetStreamContext.PushSubscription) -> Msg | object | None:
        """The next message, ``None`` after an idle heartbeat, or ``_CLOSED`` once closing."""
        receive = asyncio.ensure_future(subscription.next_msg(timeout=self.heartbeat))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({receive, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receive, closing):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                        await task
        if not receive.done() or receive.cancelled():
            return _CLOSED
        try:
            return receive.result()
        except nats.errors.TimeoutError:
            return None

    async def _latest(self, subject: str) -> gateway_pb2.AssetEvent | None:
        """The last retained event on ``subject``, if any."""
        try:
            message = await self._js.get_last_msg(EVENTS_STREAM, subject)
        except NotFoundError:
            return None
        return event_from_json(message.data or b"{}", int(message.seq or 0))

    async def _last_sequences(self) -> tuple[int, int]:
        try:
            info = await self._js.stream_info(EVENTS_STREAM)
        except NotFoundError:
            raise Unavailable("the events stream does not exist yet (is the orchestrator running?)") from None
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError):
            raise Unavailable("the events stream cannot be reached") from None
        return int(info.state.first_seq), int(info.state.last_seq)

    async def watch(
        self,
        subject: str,
        after_sequence: int,
        snapshot: Snapshot,
        *,
        end_on_terminal: bool,
    ) -> AsyncIterator[gateway_pb2.AssetEvent | None]:
        """Yields the watcher's events; ``None`` once subscribed and after each ``heartbeat`` idle seconds.

        With ``after_sequence`` 0 — or one the stream no longer holds — the current state comes first.
        Events the snapshot already reflects may be repeated, never lost; a replayed event older than
        the snapshot of its asset is dropped so a watcher never sees the state go backwards.
        """
        first, last = await self._last_sequences()
        start = after_sequence + 1
        newer_than: dict[str, dt.datetime] = {}
        replay_until = 0
        fresh = after_sequence == 0 or start < first or after_sequence > last
        if not fresh and end_on_terminal:
            # A client resuming after the terminal event (EventSource reconnects by itself) gets an
            # empty stream right away rather than a subscription that will never deliver anything.
            latest = await self._latest(subject)
            if latest is None:
                fresh = True  # nothing retained for it: start over from the current state
            elif latest.sequence <= after_sequence and is_terminal(latest):
                return
        if fresh:
            assets = await snapshot()
            for asset in assets:
                yield snapshot_event(asset, last)
                newer_than[asset.id] = asset.updated_at.ToDatetime(dt.UTC)
            if end_on_terminal and assets and all(asset.status in _TERMINAL for asset in assets):
                return
            start = last + 1
            # Events up to here may predate the snapshot; later ones were published after it.
            replay_until = (await self._last_sequences())[1]
        subscription = await self._js.subscribe(
            subject,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
        )
        try:
            yield None  # subscribed: HTTP streams send their headers now, not at the first event
            while True:
                message = await self._next(subscription)
                if message is _CLOSED:
                    return
                if not isinstance(message, Msg):
                    yield None
                    continue
                sequence = message.metadata.sequence.stream
                try:
                    event = event_from_json(message.data, sequence)
                except (ValueError, TypeError) as exc:
                    logger.warning("skipping unreadable event %d: %s", sequence, exc)
                    continue
                seen = newer_than.get(event.asset_id)
                if sequence <= replay_until and seen is not None and event.at.ToDatetime(dt.UTC) < seen:
                    continue
                yield event
                if end_on_terminal and is_terminal(event):
                    return
        finally:
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # the connection may be closing; the server reaps the consumer
                logger.debug("could not unsubscribe a watcher: %s", exc)
