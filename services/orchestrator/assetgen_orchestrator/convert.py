"""Conversions between the orchestrator's rows and the API's protobuf messages."""

from __future__ import annotations

import datetime as dt
import functools

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2
from assetgen_orchestrator.costs import AssetCost
from assetgen_orchestrator.models import AssetRow, BoxRow, TransitionRow

__all__ = [
    "asset_to_proto",
    "box_to_proto",
    "parse_poll_policy",
    "poll_policy_json",
    "source_type_name",
    "status_name",
]


def poll_policy_json(policy: provider_adapter_pb2.PollPolicy) -> str:
    """The policy as ``assets.poll_policy_json`` stores it."""
    return _poll_policy_json(policy.SerializeToString(deterministic=True))


@functools.lru_cache(maxsize=256)
def _poll_policy_json(serialized: bytes) -> str:
    # Cached: every poll of every task of a model carries the same policy.
    return json_format.MessageToJson(provider_adapter_pb2.PollPolicy.FromString(serialized), indent=None)


@functools.lru_cache(maxsize=256)
def parse_poll_policy(text: str) -> provider_adapter_pb2.PollPolicy:
    """The stored policy, parsed once per distinct text; the message is shared, so read-only."""
    return json_format.Parse(text or "{}", provider_adapter_pb2.PollPolicy())


def _timestamp(value: dt.datetime | None) -> Timestamp:
    stamp = Timestamp()
    if value is not None:
        # SQLite hands back naive datetimes; everything we store is UTC.
        stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return stamp


def box_to_proto(box: BoxRow) -> common_pb2.Box:
    """The API's view of a box."""
    return common_pb2.Box(
        id=box.id,
        name=box.name,
        created_at=_timestamp(box.created_at),
        updated_at=_timestamp(box.updated_at),
        project=box.project_id,
        budget=box.budget or "",
    )


def asset_to_proto(asset: AssetRow) -> common_pb2.Asset:
    """The API's view of an asset (file_url is filled in by whoever presents it)."""
    return common_pb2.Asset(
        id=asset.id,
        box=asset.box_id,
        status=common_pb2.AssetStatus.Value(f"ASSET_STATUS_{asset.status}"),
        source_type=common_pb2.SourceType.Value(f"SOURCE_TYPE_{asset.source_type}"),
        model=asset.model,
        prompt=asset.prompt,
        parent_asset=asset.parent_asset_id or "",
        external_task_id=asset.external_task_id,
        error_message=asset.error_message,
        content_type=asset.content_type,
        size_bytes=asset.size_bytes,
        sha256=asset.sha256,
        created_at=_timestamp(asset.created_at),
        updated_at=_timestamp(asset.updated_at),
        attempt=asset.attempt,
        progress=asset.progress,
        object_key=asset.object_key,
        config_json=asset.config_json if asset.config_json != "{}" else "",
        provider_status=asset.raw_status,
        submitted_at=_timestamp(asset.submitted_at) if asset.submitted_at else None,
        finished_at=_timestamp(asset.finished_at) if asset.finished_at else None,
        cost=_cost(asset.cost_json),
        queue_position=asset.queue_position,
    )


def _cost(text: str) -> common_pb2.Cost | None:
    cost = AssetCost.parse(text)
    return cost.to_proto() if cost is not None else None


def status_name(value: int) -> str:
    """'PENDING' for ASSET_STATUS_PENDING; '' for unspecified."""
    return "" if value == 0 else common_pb2.AssetStatus.Name(value).removeprefix("ASSET_STATUS_")


def source_type_name(value: int) -> str:
    """'GENERATED' for SOURCE_TYPE_GENERATED; '' for unspecified."""
    return "" if value == 0 else common_pb2.SourceType.Name(value).removeprefix("SOURCE_TYPE_")


def transition_to_proto(transition: TransitionRow) -> gateway_pb2.AssetTransition:
    """The API's view of one history entry."""
    return gateway_pb2.AssetTransition(
        attempt=transition.attempt,
        from_status=common_pb2.AssetStatus.Value(f"ASSET_STATUS_{transition.from_status}")
        if transition.from_status
        else common_pb2.ASSET_STATUS_UNSPECIFIED,
        to_status=common_pb2.AssetStatus.Value(f"ASSET_STATUS_{transition.to_status}"),
        step=transition.step,
        message=transition.message,
        at=_timestamp(transition.at),
    )
