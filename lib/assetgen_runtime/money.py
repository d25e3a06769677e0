"""Amounts of money: decimal strings on the wire, whole nanos (10⁻⁹ of a unit) in SQL, never floats.

A price, an estimate, a charge or a budget travels as a decimal string (``"0.80"``) and is read with
:func:`parse_amount`, which refuses anything but a non-negative decimal with at most nine places.
Databases keep amounts as integers of nanos (``to_nanos``), so sums are exact on SQLite and
PostgreSQL alike; :func:`format_amount` writes them back with at least two decimal places.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

__all__ = [
    "NANOS_PER_UNIT",
    "AmountError",
    "check_currency",
    "format_amount",
    "format_nanos",
    "parse_amount",
    "to_nanos",
]

NANOS_PER_UNIT = 1_000_000_000
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_NANO = Decimal(1).scaleb(-9)


class AmountError(ValueError):
    """A text is not an amount (or a currency) we accept; the message says what is wanted."""


def parse_amount(text: str, what: str = "amount") -> Decimal:
    """The amount in ``text``: digits with an optional point and at most 9 decimals (``"0.04"``)."""
    if not isinstance(text, str) or not _AMOUNT.fullmatch(text.strip()):
        raise AmountError(
            f'{what} must be a decimal string such as "0.04" (at most 9 decimal places), got {text!r}'
        )
    return Decimal(text.strip())


def check_currency(text: str) -> str:
    """An ISO 4217 style currency code: three capital letters (``USD``)."""
    if not isinstance(text, str) or not _CURRENCY.fullmatch(text):
        raise AmountError(f'currency must be three capital letters such as "USD", got {text!r}')
    return text


def to_nanos(amount: Decimal) -> int:
    """The amount in whole nanos, half a nano rounded up."""
    return int((amount / _NANO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_nanos(nanos: int) -> str:
    """A decimal string of ``nanos``, with at least two decimal places (``"0.80"``, ``"0.000125"``)."""
    return format_amount(Decimal(nanos) * _NANO)


def format_amount(amount: Decimal) -> str:
    """A decimal string with at least two and at most nine decimal places, no exponent."""
    rounded = amount.quantize(_NANO, rounding=ROUND_HALF_UP)
    text = f"{rounded:f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction}"
