"""Whose CPU and memory a figure counts: the four services alone, and all-in.

"All-in" adds what the services cannot work without — nats-server (whose JetStream redeliveries are
the poll schedule), the database's backends and the S3 server (weed) — so a figure per poll or per
generation says what the whole system spends, not only our Python. The fake provider, the bench
driver and other people's processes are in neither. Every figure names the processes it counted.
"""

from __future__ import annotations

from typing import Any

from bench.procstat import Measurement

__all__ = ["ALL_IN", "INFRASTRUCTURE", "SERVICES", "per_unit", "process_list", "ratio"]

SERVICES = ("gateway", "orchestrator", "provider-adapter", "storage")
INFRASTRUCTURE = ("nats", "database", "s3")
ALL_IN = (*SERVICES, *INFRASTRUCTURE)


def per_unit(measurement: Measurement, units: float) -> dict[str, float]:
    """CPU milliseconds per unit (a poll, a generation, a request): ``services`` and ``all_in``."""
    units = max(units, 1.0)
    return {
        "services": 1000 * measurement.cpu_of(SERVICES) / units,
        "all_in": 1000 * measurement.cpu_of(ALL_IN) / units,
    }


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value ÷ reference``, or None when either is missing or the reference is not positive."""
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def process_list(measurement: Measurement) -> dict[str, Any]:
    """The processes counted as ``services`` and as ``all_in``: for each group, its pids and names."""
    groups = {
        group: [
            {"pid": pid, "name": name} for pid, name in sorted(measurement.processes.get(group, {}).items())
        ]
        for group in ALL_IN
    }
    return {"services": list(SERVICES), "all_in": list(ALL_IN), "groups": groups}
