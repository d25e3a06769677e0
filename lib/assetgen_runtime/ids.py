"""Opaque, time-ordered ids that any replica can mint without coordination.

An id is a prefix and 26 Crockford base32 characters (48-bit millisecond time, 80 random bits), so
ids sort by creation time, which keyset pagination relies on. Within one process ids are strictly
increasing even inside one millisecond (ULID's monotonic mode: the next id of the same millisecond
is the previous one plus one), so a process's own records page in exactly the order it made them.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_lock = threading.Lock()
_last = 0


def new_id(prefix: str) -> str:
    """Returns a new id such as ``ast_01jd3k...``."""
    global _last
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    with _lock:
        # Same millisecond as the previous id (or the clock stepped back): keep the order.
        value = max(value, _last + 1)
        _last = value
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
