"""Opaque, time-ordered ids that any replica can mint without coordination.

An id is a prefix and 26 Crockford base32 characters (48-bit millisecond time, 80 random bits), so
ids sort by creation time, which keyset pagination relies on.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    """Returns a new id such as ``ast_01jd3k...``."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
