"""What one asset attempt costs: its estimate, the unit price it was made with, and its charge.

Pure values and arithmetic; the SQL is :mod:`.cost_ledger`'s. An asset keeps its attempt's cost as
JSON in ``assets.cost_json`` (the estimate and unit price from its model's price when it was
accepted, the charge once settled), so settling needs nothing but the asset and the provider's
answer, and reading an asset needs no join.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal, InvalidOperation

from assetgen.v1 import common_pb2, provider_adapter_pb2
from assetgen_runtime.money import format_amount

__all__ = ["AssetCost", "charge_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class AssetCost:
    """An attempt's cost, decimal strings: ``per`` is request, output or second; ``charged`` is ''
    until the attempt settles."""

    currency: str
    estimated: str
    unit_price: str
    per: str
    charged: str = ""

    @classmethod
    def of_estimate(cls, estimate: provider_adapter_pb2.CostEstimate) -> AssetCost:
        """The cost of a new attempt, from the adapter's estimate."""
        return cls(estimate.currency, estimate.estimated, estimate.unit_price, estimate.per)

    @classmethod
    def parse(cls, text: str) -> AssetCost | None:
        """The cost stored in ``assets.cost_json``; None for an unpriced asset."""
        if not text:
            return None
        data = json.loads(text)
        return cls(**{field.name: str(data.get(field.name, "")) for field in dataclasses.fields(cls)})

    def text(self) -> str:
        """The JSON ``assets.cost_json`` stores."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    def fresh(self) -> AssetCost:
        """The same estimate for a new attempt (a retry), not yet charged."""
        return dataclasses.replace(self, charged="")

    def settled(self, amount: Decimal) -> AssetCost:
        """This cost, charged ``amount``."""
        return dataclasses.replace(self, charged=format_amount(amount))

    def to_proto(self) -> common_pb2.Cost:
        """The API's view: estimated, charged, currency."""
        return common_pb2.Cost(estimated=self.estimated, charged=self.charged, currency=self.currency)


def charge_of(cost: AssetCost, usage: provider_adapter_pb2.Usage | None) -> Decimal:
    """What a finished attempt is charged: the provider's reported amount; else its reported seconds
    or outputs times the unit price (whichever the price is per); else the estimate."""
    if usage is not None:
        reported = {
            "amount": _decimal(usage.amount),
            "second": _decimal(usage.seconds),
            "output": _decimal(usage.outputs),
        }
        if reported["amount"] is not None:
            return reported["amount"]
        quantity = reported.get(cost.per)
        if quantity is not None:
            return Decimal(cost.unit_price) * quantity
    return Decimal(cost.estimated)


def _decimal(text: str) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None
