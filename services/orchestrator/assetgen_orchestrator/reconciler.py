"""The reconciler: no asset stays in flight without a job, even when the jobs stream was lost.

Every ``interval`` seconds one replica — the holder of the ``reconciler`` lease (:mod:`.lease`) —
looks for in-flight assets that nothing has changed for ``quiet_after`` seconds, asks the jobs
stream which assets have a job message (one subject per asset; a work queue keeps a message until
its asset ends), and publishes a new job for each quiet asset that has none: a job lost with a
stream or a node, never published (NATS was down when the generation was accepted or retried), or
published on a subject no consumer reads any more. A missing stream is created again first.

A republished job belongs to a new *generation*: the asset's ``job_generation`` is raised by a
compare-and-set before the publish, and the message carries it (and its message id, so JetStream's
duplicate window cannot swallow it as a repeat of the lost one). Should the old job turn up after
all, its first delivery finds itself outdated and ends, so an asset is never driven, nor its
provider polled, by two jobs at once; a raise that loses its compare-and-set means the asset just
moved, so it is alive and left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen_orchestrator.jobs import ASSET_JOBS, JOBS_STREAM, JOBS_SUBJECT, Job, JobPublisher
from assetgen_orchestrator.lease import Lease
from assetgen_orchestrator.models import AssetRow, utcnow
from assetgen_orchestrator.store import AssetStore

__all__ = ["LEASE_NAME", "Reconciler", "StreamMissing", "assets_with_jobs", "start_reconciler"]

logger = logging.getLogger(__name__)

LEASE_NAME = "reconciler"
LEASE_INTERVALS = 4
"""The lease lives this many passes: a holder that misses a few renewals (a slow database) keeps it."""
_STREAM_NOT_FOUND = 10059  # JetStream's error code for "stream not found"


class StreamMissing(Exception):
    """The jobs stream does not exist."""


async def assets_with_jobs(nc: Client, *, timeout: float = 10.0) -> set[str]:
    """The ids of the assets that have a job message in the jobs stream, read page by page.

    Raises ``StreamMissing`` when there is no jobs stream.
    """
    prefix = f"{JOBS_SUBJECT}."
    found: set[str] = set()
    offset = 0
    while True:
        request = json.dumps({"subjects_filter": ASSET_JOBS, "offset": offset}).encode()
        reply = await nc.request(f"$JS.API.STREAM.INFO.{JOBS_STREAM}", request, timeout=timeout)
        body = json.loads(reply.data)
        error = body.get("error")
        if error:
            if error.get("err_code") == _STREAM_NOT_FOUND or error.get("code") == 404:
                raise StreamMissing(error.get("description", "stream not found"))
            raise RuntimeError(f"jobs stream info failed: {error}")
        subjects = (body.get("state") or {}).get("subjects") or {}
        found.update(subject.removeprefix(prefix) for subject in subjects)
        offset += len(subjects)
        if not subjects or offset >= int(body.get("total", 0)):
            return found


class Reconciler:
    """Finds in-flight assets without a job and publishes one; run by the lease holder only."""

    def __init__(
        self,
        store: AssetStore,
        jobs: JobPublisher,
        lease: Lease,
        *,
        live_jobs: Callable[[], Awaitable[set[str]]],
        ensure_streams: Callable[[], Awaitable[None]],
        interval: float,
        quiet_after: float,
        batch: int = 5000,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._lease = lease
        self._live_jobs = live_jobs
        self._ensure_streams = ensure_streams
        self._interval = interval
        self._quiet_after = dt.timedelta(seconds=quiet_after)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    async def reconcile(self) -> int | None:
        """One pass: the number of jobs published, or None if another replica holds the lease.

        Every asset quiet since the pass began is looked at, page by page, against one reading of
        the stream. Only the reconciler publishes jobs for quiet assets, so one that looks jobless
        is: unless it ended since it was read (its job acknowledged), and then its version moved,
        the compare-and-set before the republish fails and it is left alone.
        """
        if not await self._lease.acquire():
            return None
        before = utcnow() - self._quiet_after
        live: set[str] | None = None
        published, after = 0, ""
        while quiet := await self._store.quiet_in_flight(before, self._batch, after=after):
            if live is None:
                live = await self._assets_with_jobs()
            for asset in quiet:
                if asset.id not in live and await self._republish(asset):
                    published += 1
            after = quiet[-1].id
        return published

    async def _assets_with_jobs(self) -> set[str]:
        try:
            return await self._live_jobs()
        except StreamMissing:
            logger.warning("the jobs stream is missing; creating it again and republishing every job")
            await self._ensure_streams()
            return set()

    async def _republish(self, asset: AssetRow) -> bool:
        """Publishes a job of a new generation for ``asset``; False if the asset moved meanwhile."""
        if not await self._store.update_asset(asset, job_generation=asset.job_generation + 1):
            return False  # it changed since we read it: something is moving it on
        await self._jobs.publish(Job(asset.id, asset.attempt, asset.job_generation))
        logger.warning(
            "republished a lost generation job",
            extra={"asset_id": asset.id, "attempt": asset.attempt, "generation": asset.job_generation},
        )
        return True

    def start(self) -> None:
        """Runs a pass every ``interval`` seconds until stopped."""
        self._task = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        """Stops the passes and gives the lease up for another replica."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._lease.release()

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:
                logger.exception("reconciling failed; trying again next pass")
            await asyncio.sleep(self._interval)  # a timer: the passes are periodic by nature


def start_reconciler(
    store: AssetStore,
    jobs: JobPublisher,
    engine: AsyncEngine,
    nc: Client,
    ensure_streams: Callable[[], Awaitable[None]],
    *,
    interval: float,
    quiet_after: float,
) -> Reconciler:
    """The reconciler of this replica, started: it works whenever this replica holds the lease."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    reconciler = Reconciler(
        store,
        jobs,
        Lease(engine, LEASE_NAME, holder, ttl=interval * LEASE_INTERVALS),
        live_jobs=lambda: assets_with_jobs(nc),
        ensure_streams=ensure_streams,
        interval=interval,
        quiet_after=quiet_after,
    )
    reconciler.start()
    return reconciler
