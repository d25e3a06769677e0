"""Min, median and max over repeated runs of one benchmark, figure by figure.

A benchmark's figures are a nested dict (numbers, strings, lists, dicts); repeated runs give one
such dict each. :func:`combine` gives three dicts of the same shape: each number replaced by its
minimum, median and maximum over the runs that have it. A figure derived from others (a ratio to a
same-run reference) is computed within each run first, so its median is the median of the same-run
ratios, not a ratio of medians. What is not a number (a label, a list of samples) is taken from the
first run that has it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.stats import percentile

__all__ = ["SKIPPED", "STATISTICS", "combine", "spread"]

STATISTICS = ("min", "median", "max")

SKIPPED = frozenset({"profiles", "trace"})
"""Keys whose values are by-products of one run (profiles, an error's trace): kept in ``runs`` only."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def spread(values: Sequence[float]) -> dict[str, float]:
    """``min``, ``median`` and ``max`` of ``values`` (NaNs ignored; NaN each when none is left)."""
    kept = [float(v) for v in values if not math.isnan(v)]
    if not kept:
        return dict.fromkeys(STATISTICS, math.nan)
    return {"min": min(kept), "median": percentile(kept, 0.5), "max": max(kept)}


def _combine_values(values: list[Any]) -> dict[str, Any]:
    if all(isinstance(v, dict) for v in values):
        keys: list[str] = []
        for value in values:
            keys.extend(k for k in value if k not in keys and k not in SKIPPED)
        parts = {key: _combine_values([v[key] for v in values if key in v]) for key in keys}
        return {stat: {key: part[stat] for key, part in parts.items()} for stat in STATISTICS}
    present = [v for v in values if v is not None]
    if present and all(_is_number(v) for v in present):
        # A figure a run could not give (None: no reference, nothing measured) counts in none.
        numbers = spread(present)
        if all(isinstance(v, int) for v in present) and all(
            x == int(x) for x in numbers.values() if not math.isnan(x)
        ):
            return {stat: int(x) for stat, x in numbers.items()}
        return numbers
    return dict.fromkeys(STATISTICS, values[0])


def combine(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{"min": …, "median": …, "max": …}``, each shaped like one run's figures.

    A run that failed (it has an ``error``) counts in none of them; with no run left, each is ``{}``.
    """
    good = [run for run in runs if "error" not in run]
    if not good:
        return {stat: {} for stat in STATISTICS}
    return _combine_values(list(good))
