"""Model prices: checked when saved, estimated per generation, usage read from provider answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from assetgen_provider_adapter.paths import compile_path
from assetgen_provider_adapter.pricing import Price, PriceError, check_price_json, usage_of
from assetgen_provider_adapter.profile_sections import BillingSpec


def _estimate(price: dict[str, Any], **variables: Any) -> tuple[str, str, str]:
    cost = Price.parse(price).estimate(variables)
    return cost.estimated, cost.unit_price, cost.per


def test_per_request() -> None:
    assert _estimate({"currency": "USD", "per_request": "0.04"}) == ("0.04", "0.04", "request")


def test_per_output_counts_the_outputs_variable() -> None:
    price = {"currency": "USD", "per_output": "0.04", "outputs_variable": "n"}
    assert _estimate(price, n=3)[0] == "0.12"
    assert _estimate(price)[0] == "0.04"


def test_per_second_with_a_table_by_resolution() -> None:
    price = {
        "currency": "USD",
        "per_second": "0.05",
        "seconds_variable": "duration",
        "table": {"variable": "resolution", "prices": {"1080p": "0.08"}},
    }
    assert _estimate(price, duration="8") == ("0.40", "0.05", "second")
    assert _estimate(price, duration=8, resolution="1080p") == ("0.64", "0.08", "second")
    assert _estimate(price, duration="5s", resolution="720p")[0] == "0.25"
    with pytest.raises(PriceError, match="'duration'"):
        _estimate(price, resolution="1080p")
    with pytest.raises(PriceError, match="number of seconds"):
        _estimate(price, duration="long")


def test_three_tenths_are_exact() -> None:
    assert _estimate({"currency": "USD", "per_output": "0.1", "outputs_variable": "n"}, n=3)[0] == "0.30"


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ([], "JSON object"),
        ({"currency": "USD"}, "exactly one"),
        ({"currency": "USD", "per_request": "1", "per_output": "1"}, "exactly one"),
        ({"currency": "USD", "per_request": 0.04}, "decimal string"),
        ({"currency": "usd", "per_request": "0.04"}, "currency"),
        ({"currency": "USD", "per_second": "0.05"}, "seconds_variable"),
        ({"currency": "USD", "per_request": "1", "seconds_variable": "d"}, "goes with per_second"),
        ({"currency": "USD", "per_request": "1", "colour": "red"}, "unknown fields: colour"),
        ({"currency": "USD", "per_request": "1", "table": {"variable": "r"}}, "price.table"),
        ({"currency": "USD", "per_request": "1", "table": {"variable": "r", "prices": {"a": "x"}}}, "a must"),
    ],
)
def test_malformed_prices_are_refused_with_the_reason(price: Any, message: str) -> None:
    with pytest.raises(PriceError, match=message):
        check_price_json(json.dumps(price))


def test_no_price() -> None:
    assert check_price_json("") == ""
    assert check_price_json("{}") == ""


def test_usage_is_read_where_the_profile_maps_it() -> None:
    billing = BillingSpec(
        usage=(("amount", compile_path("data.cost")), ("outputs", compile_path("data.images")))
    )
    assert usage_of(billing, {"data": {"cost": 0.125, "images": ["a", "b"]}}) == {
        "amount": "0.125",
        "outputs": "2.00",
    }
    assert usage_of(billing, {"data": {"cost": "junk"}}) == {}
    assert usage_of(None, {"data": {"cost": 1}}) == {}
