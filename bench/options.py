"""The knobs of `make bench`: sizes and durations of every benchmark (defaults: the issue's numbers)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Options"]


@dataclass
class Options:
    """Sizes, durations and where results go; each benchmark reads its own fields."""

    database: str = "postgresql"
    log_level: str = "INFO"
    concurrency: int = 32
    # Runs of each benchmark (each on a fresh system); every figure is reported as min / median / max.
    repeats: int = 3
    # Processes of the provider-adapter (more than one: its callers spread calls over them all).
    adapter_replicas: int = 1
    # Realistic work (bench/workload.py): several models and boxes, provider time 5–30 s for images
    # and 20–120 s for videos, results 100 KB – 20 MB of their own bytes, each stored object checked;
    # the plan is drawn from ``seed``. Polls then come every ``realistic_poll_seconds``.
    realistic: bool = False
    seed: int = 27
    realistic_poll_seconds: float = 5.0
    # 1. throughput
    n: int = 2000
    result_bytes: int = 100 * 1024
    throughput_poll_seconds: float = 1.0
    throughput_timeout: float = 900.0
    profile: bool = True
    profile_n: int = 0
    # 2./3. in-flight capacity and completion lag
    inflight_n: int = 10_000
    intervals: list[float] = field(default_factory=lambda: [10.0, 60.0])
    window: float = 0.0
    # How long a held task runs: N tasks in flight that each take this long finish at N / this per
    # second, so the release spreads the finishes over it.
    task_seconds: float = 300.0
    ramp_timeout: float = 600.0
    drain_timeout: float = 600.0
    # py-spy on the two hottest services after the window (when ``profile``).
    inflight_profile_seconds: float = 30.0
    # 3b. completion lag with callbacks (``inflight_n`` held, finishing over ``task_seconds``): the
    # poll interval, which callbacks make sparser still (the profile's safety poll).
    callback_interval: float = 60.0
    # 3c. queueing: N generations of ``queueing_task_seconds`` each through ``queueing_keys`` keys
    # of concurrency ``queueing_key_limit`` (the provider refuses more per key with a 429).
    queueing_n: int = 1000
    queueing_task_seconds: float = 2.0
    queueing_keys: int = 2
    queueing_key_limit: int = 5
    queueing_poll_seconds: float = 1.0
    queueing_timeout: float = 1800.0
    # Scale: held generations stepped up through these levels at ``scale_interval`` until polls fall
    # behind (lateness p99 over the limit) or the services + NATS + database outgrow the memory limit.
    scale_levels: list[int] = field(default_factory=lambda: [5_000, 10_000, 20_000, 40_000, 70_000, 100_000])
    scale_interval: float = 60.0
    scale_window_intervals: float = 2.0
    scale_lateness_limit: float = 1.0
    scale_memory_limit: int = 2 * 1024**3
    # A production day: realistic generations arriving at ``day_rate`` per second for ``day_minutes``.
    day_rate: float = 2.0
    day_minutes: float = 10.0
    # 4. ingest
    ingest_bytes: int = 1024**3
    # 5. API
    api_seconds: float = 10.0
    api_concurrency: int = 32
    output: Path = Path("bench/results/latest.json")
    # Raw profiles and other large by-products (not committed).
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "assetgen-bench")

    @property
    def poll_seconds(self) -> float:
        """The throughput run's poll interval: 1 s for the instant work, 5 s for the realistic."""
        return self.realistic_poll_seconds if self.realistic else self.throughput_poll_seconds

    def window_for(self, interval: float) -> float:
        """Seconds the in-flight measurement lasts: three poll intervals, at least a minute."""
        return self.window or max(3 * interval, 60.0)
