"""Services alone and all-in: which processes a CPU or memory figure counts (bench/accounting.py)."""

from __future__ import annotations

import pytest

from bench.accounting import ALL_IN, SERVICES, per_unit, process_list, ratio
from bench.procstat import Measurement


def _measurement() -> Measurement:
    cpu = dict.fromkeys(SERVICES, 0.25) | {
        "nats": 0.5,
        "database": 0.25,
        "s3": 0.25,
        "driver": 9.0,
        "provider": 9.0,
    }
    return Measurement(
        seconds=10.0,
        cpu=cpu,
        machine_cpu=30.0,
        rss_max={},
        rss_mean={},
        processes={"nats": {42: "nats-server"}, "database": {7: "postgres", 5: "postgres"}},
        rss_samples={"gateway": [100, 300], "nats": [50, 10], "s3": [1, 1], "driver": [10**9, 10**9]},
    )


def test_all_in_adds_nats_database_and_s3_but_never_the_driver_or_the_provider() -> None:
    assert set(ALL_IN) - set(SERVICES) == {"nats", "database", "s3"}
    cpu = per_unit(_measurement(), 1000)
    assert cpu["services"] == pytest.approx(1.0)  # 4 × 0.25 s over 1,000 polls
    assert cpu["all_in"] == pytest.approx(2.0)  # + 0.5 + 0.25 + 0.25 s
    assert per_unit(_measurement(), 0)["services"] == pytest.approx(1000.0)  # no unit: counted as one


def test_resident_all_in_is_the_most_held_at_one_sample_not_the_sum_of_maxima() -> None:
    measurement = _measurement()
    assert measurement.rss_max_of(("gateway", "nats", "s3")) == 311  # 300 + 10 + 1, not 300 + 50 + 1
    assert measurement.rss_max_of(("orchestrator",)) == 0


def test_the_process_list_names_every_counted_process() -> None:
    listed = process_list(_measurement())
    assert listed["services"] == list(SERVICES)
    assert listed["all_in"] == list(ALL_IN)
    assert listed["groups"]["database"] == [{"pid": 5, "name": "postgres"}, {"pid": 7, "name": "postgres"}]
    assert "driver" not in listed["groups"]


def test_ratio_is_none_without_a_usable_reference() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) is None
    assert ratio(None, 2.0) is None
