"""Min / median / max over repeated benchmark runs, figure by figure (bench/repeats.py)."""

from __future__ import annotations

import math

from bench.repeats import combine, spread


def test_spread_is_min_median_max_and_ignores_nan() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert spread([4.0, 1.0]) == {"min": 1.0, "median": 2.5, "max": 4.0}
    assert spread([math.nan, 5.0]) == {"min": 5.0, "median": 5.0, "max": 5.0}
    assert all(math.isnan(x) for x in spread([]).values())


def test_combine_keeps_the_shape_and_takes_each_number_alone() -> None:
    runs = [
        {"rate": 10.0, "cpu": {"gateway": 1.0, "nats": 4.0}, "label": "a", "completed": 3},
        {"rate": 30.0, "cpu": {"gateway": 3.0, "nats": 2.0}, "label": "b", "completed": 5},
        {"rate": 20.0, "cpu": {"gateway": 2.0, "nats": 6.0}, "label": "c", "completed": 4},
    ]
    combined = combine(runs)
    assert combined["median"] == {
        "rate": 20.0,
        "cpu": {"gateway": 2.0, "nats": 4.0},
        "label": "a",
        "completed": 4,
    }
    assert combined["min"]["cpu"] == {"gateway": 1.0, "nats": 2.0}
    assert combined["max"]["rate"] == 30.0
    assert isinstance(combined["median"]["completed"], int)


def test_a_ratio_is_the_median_of_same_run_ratios_not_a_ratio_of_medians() -> None:
    runs = [
        {"a": 1.0, "b": 1.0, "ratio": 1.0},
        {"a": 10.0, "b": 2.0, "ratio": 5.0},
        {"a": 3.0, "b": 3.0, "ratio": 1.0},
    ]
    median = combine(runs)["median"]
    assert median["ratio"] == 1.0
    assert median["a"] / median["b"] != median["ratio"]


def test_failed_runs_and_one_run_by_products_are_left_out() -> None:
    runs = [
        {"rate": 1.0, "profiles": {"x": 1}},
        {"error": "RuntimeError: boom", "trace": "..."},
        {"rate": 3.0, "extra": 7.0},
    ]
    combined = combine(runs)
    assert combined["median"] == {"rate": 2.0, "extra": 7.0}
    assert "profiles" not in combined["max"]
    assert combine([{"error": "x"}]) == {"min": {}, "median": {}, "max": {}}


def test_an_even_count_of_integers_gives_a_fractional_median() -> None:
    assert combine([{"n": 1}, {"n": 2}])["median"]["n"] == 1.5


def test_a_figure_missing_from_some_runs_is_taken_from_the_runs_that_have_it() -> None:
    combined = combine([{"ratio": None}, {"ratio": 2.0}, {"ratio": 4.0}])
    assert combined["median"]["ratio"] == 3.0 and combined["min"]["ratio"] == 2.0
    assert combine([{"ratio": None}, {"ratio": None}])["median"]["ratio"] is None
