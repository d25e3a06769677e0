"""When webhook deliveries are tried again, and which answers end them: pure functions.

The default schedule is Standard Webhooks' suggestion (and Svix's): the first try at once, then
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after each failure — about a day and a half in all.
"""

from __future__ import annotations

import re

from assetgen_runtime.settings import SettingsError

__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "EVENT_TYPES",
    "event_type",
    "next_retry_delay",
    "parse_retry_schedule",
]

DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")

EVENT_TYPES = ("asset.processing", "asset.completed", "asset.failed", "asset.canceled")
"""The events an endpoint can be sent, one per status an asset can enter but PENDING."""


def event_type(status: str) -> str:
    """The event type of an asset entering ``status``; '' for one that is not an event (PENDING)."""
    name = f"asset.{status.lower()}"
    return name if name in EVENT_TYPES else ""


def parse_retry_schedule(text: str) -> tuple[float, ...]:
    """Seconds to wait before each retry: ``"5s,5m,2h"`` -> (5, 300, 7200); a bare number is seconds."""
    delays = []
    for part in text.split(","):
        match = _PART.fullmatch(part.strip().lower())
        if match is None:
            raise SettingsError(
                f"ASSETGEN_WEBHOOK_RETRY_SCHEDULE: {part.strip()!r} is not a delay like 5s or 2h"
            )
        delays.append(float(match.group(1)) * _UNITS[match.group(2) or "s"])
    return tuple(delays)


def next_retry_delay(schedule: tuple[float, ...], tries: int) -> float | None:
    """Seconds until the next try after ``tries`` failed ones; None when the schedule is spent."""
    if tries < 1 or tries > len(schedule):
        return None
    return schedule[tries - 1]
