"""The bench table shows every figure's median with its min and max over the runs (bench/report.py)."""

from __future__ import annotations

from typing import Any

from bench.repeats import combine
from bench.report import header, table


def _ingest(mb_per_s: float, peak: float) -> dict[str, Any]:
    return {
        "bytes": 1024**3,
        "mb_per_s": mb_per_s,
        "storage_peak_mb": peak,
        "reference_upload": {"mb_per_s": 200.0, "peak_rss_bytes": 95e6},
    }


def test_the_table_has_median_min_and_max_of_each_figure() -> None:
    runs = [_ingest(150.0, 140.0), _ingest(180.0, 120.0), _ingest(170.0, 190.0)]
    results = {"ingest": {"runs": runs, **combine(runs)}}
    lines = table(results).splitlines()
    assert lines[0].startswith("| bench | figure | median | min | max |")
    speed = next(line for line in lines if "MB/s" in line)
    assert "| 170.0 | 150.0 | 180.0 |" in speed
    assert speed.endswith("| below |")  # the verdict is the median's: 170 < 95 % of 200
    peak = next(line for line in lines if "peak RSS" in line)
    assert "| 140 | 120 | 190 |" in peak


def test_the_header_names_commit_host_versions_and_runs() -> None:
    info = {
        "git": {"commit": "0123456789abcdef" * 2 + "01234567", "subject": "bench: x", "dirty": True},
        "host": {
            "cores": 2,
            "cpu_model": "AMD EPYC",
            "memory_bytes": 2 * 1024**3,
            "loadavg": [0.5, 0.25, 0.1],
        },
        "versions": {"python": "3.11.7", "grpcio": "1.85.1", "postgresql": "15.4"},
    }
    text = header(info, {"ingest": {"runs": [{}, {}, {}]}})
    assert "commit 0123456789ab + uncommitted changes: bench: x" in text
    assert "2 cores, AMD EPYC, 2.0 GiB, load average at start 0.50 / 0.25 / 0.10" in text
    assert "grpcio 1.85.1" in text and "postgresql 15.4" in text and "uvloop –" in text
    assert "runs ingest 3" in text


def _queueing(seconds: float, refused: int) -> dict[str, Any]:
    return {
        "keys": 2,
        "key_limit": 5,
        "task_seconds": 2.0,
        "generations": 100,
        "completed": 100,
        "seconds": seconds,
        "ideal_seconds": 20.0,
        "ratio_to_ideal": seconds / 20.0,
        "cpu_s_services": 10.0,
        "cpu_s_all_in": 14.0,
        "cpu_ms_per_generation_services": 100.0,
        "provider_peak_by_key": {"a": 5, "b": 5},
        "provider_refused_429": refused,
        "longest_queue": 90,
    }


def test_queueing_rows_give_completion_against_the_ideal_and_whether_limits_held() -> None:
    runs = [_queueing(30.0, 0), _queueing(36.0, 0), _queueing(40.0, 1)]
    lines = table({"queueing": {"runs": runs, **combine(runs)}}).splitlines()
    completion = next(line for line in lines if "completion s" in line)
    assert "| 36.0 | 30.0 | 40.0 | ideal 20 s (×1.80) |" in completion
    limits = next(line for line in lines if "peak per key" in line)
    assert "| 5 / 0; 90 |" in limits and limits.endswith("| ok |")  # the median run: no 429


def test_a_benchmark_whose_every_run_failed_leaves_no_row_and_no_error() -> None:
    runs = [{"error": "RuntimeError: boom", "trace": "..."}]
    results = {
        key: {"runs": runs, **combine(runs)}
        for key in ("throughput", "inflight-10s", "ingest", "scale", "day", "api", "callbacks", "queueing")
    }
    assert table(results).splitlines()[2:] == []
