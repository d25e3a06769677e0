"""Benchmark 4, ingest: a 1 GiB result copied into S3 by a real generation.

The fake provider serves the result (streamed, PNG-headed, incompressible); the clock runs from the
provider starting to send it to the asset's COMPLETED event, so it includes storage's streaming copy
and S3's multipart completion. The storage process's peak RSS is its VmHWM, reset just before.
Reference, same run, same S3 server: a direct MinIO-client ``fput_object`` of the same bytes from
local disk, in a process of its own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from assetgen_dev.fake_providers.media import write_result
from bench.accounting import ALL_IN, SERVICES, process_list
from bench.options import Options
from bench.procstat import memory, reset_peak
from bench.references import run_reference
from bench.system import start_system

__all__ = ["run"]

logger = logging.getLogger(__name__)


async def run(options: Options) -> dict[str, Any]:
    """Runs the ingest benchmark on a fresh system; returns its figures."""
    size = options.ingest_bytes
    system = await start_system(options)
    try:
        model = await system.configure(interval=1.0)
        box = await system.create_box("ingest")
        storage_pid = system.pids["storage"]
        before = memory(storage_pid)
        reset_peak(storage_pid)
        sampler = system.sampler(interval=0.5)
        sampler.start()
        asset = await system.generate(box, model, "one big result", {"size": size})
        if (
            not await system.events.wait_finished({asset}, timeout=1800)
            or asset not in system.events.completed
        ):
            raise RuntimeError(f"the ingest did not complete: {system.events.failed.get(asset, 'timed out')}")
        measurement = await sampler.stop()
        peak = memory(storage_pid).get("VmHWM", 0)
        download = next(d for d in await system.provider_get("/_demo/downloads") if d["bytes"] == size)
        seconds = system.events.completed[asset] - download["start"]
        figures: dict[str, Any] = {
            "bytes": size,
            "seconds": seconds,
            "mb_per_s": size / seconds / 1e6,
            "provider_send_seconds": download["end"] - download["start"],
            "storage_peak_mb": peak / 1e6,
            "storage_rss_before_mb": before.get("VmRSS", 0) / 1e6,
            "storage_cpu_seconds": measurement.cpu["storage"],
            "s3_cpu_seconds": measurement.cpu["s3"],
            "cpu_seconds_services": measurement.cpu_of(SERVICES),
            "cpu_seconds_all_in": measurement.cpu_of(ALL_IN),
            "accounting": process_list(measurement),
        }
        logger.info("ingest: %s", figures)

        options.work_dir.mkdir(parents=True, exist_ok=True)
        path = options.work_dir / f"ingest-reference-{uuid.uuid4().hex[:8]}.png"
        try:
            await asyncio.to_thread(write_result, str(path), size)
            figures["reference_upload"] = await run_reference(
                "upload",
                "--file",
                str(path),
                "--s3",
                system.s3.url,
                f"--access={system.s3.access_key}",
                # "=": a secret may begin with "-", which argparse would take for an option.
                f"--secret={system.s3.secret_key}",
                "--bucket",
                f"reference-{uuid.uuid4().hex[:8]}",
            )
        finally:
            path.unlink(missing_ok=True)
        logger.info("ingest reference: %s", figures["reference_upload"])
        return figures
    finally:
        await system.stop()
