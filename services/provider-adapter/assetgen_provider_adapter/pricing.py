"""A model's price, what one generation is estimated to cost, and what a provider reports it used.

A price (``model.price``) is JSON checked when the model is saved::

    {"currency": "USD", "per_request": "0.04"}
    {"currency": "USD", "per_output": "0.04", "outputs_variable": "n"}
    {"currency": "USD", "per_second": "0.05", "seconds_variable": "duration",
     "table": {"variable": "resolution", "prices": {"1080p": "0.08"}}}

Exactly one of ``per_request``, ``per_output`` and ``per_second`` is the unit price; ``table`` replaces
it by the value one generation variable has (a value the table lacks keeps the unit price). Amounts
are decimal strings (``assetgen_runtime.money``), never floats. The estimate of a generation is the
unit price times one request, its ``outputs_variable`` outputs (1 when unset) or its
``seconds_variable`` seconds (required). The orchestrator keeps the estimate and the unit price with
the asset and settles from the provider's usage (:func:`usage_of`, the profile's ``billing`` section).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from assetgen.v1 import provider_adapter_pb2
from assetgen_provider_adapter.paths import evaluate
from assetgen_provider_adapter.profile_sections import BillingSpec
from assetgen_runtime.money import AmountError, check_currency, format_amount, parse_amount

__all__ = ["Price", "PriceError", "check_price_json", "usage_of"]

_UNITS = {"per_request": "request", "per_output": "output", "per_second": "second"}
_KEYS = frozenset({*_UNITS, "currency", "outputs_variable", "seconds_variable", "table"})


class PriceError(ValueError):
    """A price is malformed, or a generation lacks what its price needs; the message says which."""


@dataclass(frozen=True)
class Price:
    """A parsed price: the currency, what the unit is (``request``, ``output``, ``second``) and what
    it costs, and the table of unit prices by one variable's value."""

    currency: str
    per: str
    unit: Decimal
    variable: str = ""
    table_variable: str = ""
    table: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, data: Any) -> Price:
        """Checks a price's JSON value; raises :class:`PriceError` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise PriceError("price must be a JSON object")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise PriceError(f"price has unknown fields: {', '.join(unknown)}")
        units = [key for key in _UNITS if key in data]
        if len(units) != 1:
            raise PriceError("price needs exactly one of per_request, per_output, per_second")
        key = units[0]
        try:
            currency = check_currency(data.get("currency", ""))
            unit = parse_amount(data[key], f"price.{key}")
            table_variable, table = _table(data.get("table"))
        except AmountError as exc:
            raise PriceError(str(exc)) from None
        variable = ""
        if key == "per_second":
            variable = data.get("seconds_variable", "")
            if not isinstance(variable, str) or not variable:
                raise PriceError('price.per_second needs seconds_variable (e.g. "duration")')
        elif key == "per_output":
            variable = data.get("outputs_variable", "")
            if not isinstance(variable, str):
                raise PriceError("price.outputs_variable must be a variable name")
        for other, owner in (("seconds_variable", "per_second"), ("outputs_variable", "per_output")):
            if other in data and key != owner:
                raise PriceError(f"price.{other} goes with {owner}")
        return cls(currency, _UNITS[key], unit, variable, table_variable, table)

    def unit_price(self, variables: Mapping[str, Any]) -> Decimal:
        """The unit price for these variables: the table's for its variable's value, else the price's."""
        if self.table_variable:
            value = variables.get(self.table_variable)
            chosen = self.table.get(value if isinstance(value, str) else json.dumps(value))
            if chosen is not None:
                return chosen
        return self.unit

    def estimate(self, variables: Mapping[str, Any]) -> provider_adapter_pb2.CostEstimate:
        """What a generation with these variables is expected to cost; PriceError if one is missing."""
        unit = self.unit_price(variables)
        if self.per == "request":
            quantity = Decimal(1)
        elif self.per == "output":
            given = self.variable and variables.get(self.variable) is not None
            quantity = _quantity(variables, self.variable, "outputs") if given else Decimal(1)
        else:
            if variables.get(self.variable) is None:
                raise PriceError(f"the model is priced per second: give {self.variable!r} (seconds)")
            quantity = _quantity(variables, self.variable, "seconds")
        return provider_adapter_pb2.CostEstimate(
            currency=self.currency,
            estimated=format_amount(unit * quantity),
            unit_price=format_amount(unit),
            per=self.per,
        )


def check_price_json(text: str) -> str:
    """A price's JSON text as stored (compact), or '' for no price ('' or ``{}``); PriceError if bad."""
    if not text.strip():
        return ""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PriceError(f"price is not JSON: {exc}") from None
    if data == {}:
        return ""
    Price.parse(data)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _table(data: Any) -> tuple[str, Mapping[str, Decimal]]:
    if data is None:
        return "", MappingProxyType({})
    if not isinstance(data, Mapping) or set(data) != {"variable", "prices"}:
        raise PriceError('price.table must be {"variable": name, "prices": {value: amount}}')
    variable, prices = data["variable"], data["prices"]
    if not isinstance(variable, str) or not variable or not isinstance(prices, Mapping) or not prices:
        raise PriceError("price.table needs a variable name and at least one price")
    return variable, MappingProxyType(
        {str(value): parse_amount(amount, f"price.table.prices.{value}") for value, amount in prices.items()}
    )


def _quantity(variables: Mapping[str, Any], name: str, what: str) -> Decimal:
    value = variables.get(name)
    text = value.strip().removesuffix("s") if isinstance(value, str) else value
    try:
        quantity = Decimal(str(text)) if not isinstance(text, bool) else Decimal("NaN")
    except InvalidOperation:
        quantity = Decimal("NaN")
    if not quantity.is_finite() or quantity < 0:
        raise PriceError(f"{name!r} must be a number of {what} to price the generation, got {value!r}")
    return quantity


def usage_of(billing: BillingSpec | None, body: Any) -> dict[str, str]:
    """What a provider's answer says the task used (``amount``, ``seconds``, ``outputs`` as decimal
    strings), where the profile's ``billing.usage`` maps it; empty when the answer holds none of it."""
    if billing is None or body is None:
        return {}
    found: dict[str, str] = {}
    for name, path in billing.usage:
        value = evaluate(path, body)
        if isinstance(value, list) and name == "outputs":
            value = len(value)
        if isinstance(value, bool) or value is None:
            continue
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            continue
        if amount.is_finite() and amount >= 0:
            found[name] = format_amount(amount)
    return found
