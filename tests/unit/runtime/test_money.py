"""Amounts: decimal strings in, exact nanos in SQL, decimal strings out; floats and junk refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from assetgen_runtime.money import AmountError, check_currency, format_nanos, parse_amount, to_nanos


@pytest.mark.parametrize("text", ["0", "0.04", "12.5", "0.000000001", "100"])
def test_decimal_strings_are_amounts(text: str) -> None:
    assert parse_amount(text) == Decimal(text)


@pytest.mark.parametrize("text", ["", "-1", "1e3", "0.0000000001", "abc", "1.", ".5", "NaN"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(AmountError, match="decimal string"):
        parse_amount(text)


def test_a_float_is_not_an_amount() -> None:
    with pytest.raises(AmountError):
        parse_amount(0.1)  # type: ignore[arg-type]


def test_nanos_round_trip_exactly() -> None:
    assert to_nanos(Decimal("0.80")) == 800_000_000
    assert format_nanos(800_000_000) == "0.80"
    assert format_nanos(to_nanos(Decimal("0.1")) * 3) == "0.30"  # 0.1 * 3 as floats is 0.30000000000000004
    assert format_nanos(125_000) == "0.000125"
    assert format_nanos(0) == "0.00"
    assert format_nanos(12_000_000_000) == "12.00"


def test_currency_codes() -> None:
    assert check_currency("USD") == "USD"
    for bad in ("usd", "US", "DOLLARS", ""):
        with pytest.raises(AmountError):
            check_currency(bad)
