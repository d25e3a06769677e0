"""The messages the provider-adapter answers with: task statuses, poll policies, providers and models."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2
from assetgen_provider_adapter.db import ModelRow, ProviderRow
from assetgen_provider_adapter.engine_types import MAX_TEXT, TaskResult
from assetgen_provider_adapter.key_pool import KeyView
from assetgen_provider_adapter.placeholders import submit_variables
from assetgen_provider_adapter.profiles import PollTiming, Profile
from assetgen_provider_adapter.templates import TemplateVariables, inspect_template

__all__ = ["key_message", "model_message", "poll_policy_of", "provider_message", "to_task_status"]

_STATES = {
    "PENDING": provider_adapter_pb2.TASK_STATE_PENDING,
    "PROCESSING": provider_adapter_pb2.TASK_STATE_PROCESSING,
    "COMPLETED": provider_adapter_pb2.TASK_STATE_COMPLETED,
    "FAILED": provider_adapter_pb2.TASK_STATE_FAILED,
    "CANCELED": provider_adapter_pb2.TASK_STATE_CANCELED,
}


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def poll_policy_of(profile: Profile) -> provider_adapter_pb2.PollPolicy:
    """The PollPolicy message of a profile's polling section; shared, so never modify it."""
    return _poll_policy(profile.poll_timing)


@lru_cache(maxsize=256)
def _poll_policy(timing: PollTiming) -> provider_adapter_pb2.PollPolicy:
    # Every answer carries the policy: build each distinct one once (messages copy it when nested).
    return provider_adapter_pb2.PollPolicy(
        initial_delay_ms=timing.initial_delay_ms,
        backoff=timing.backoff,
        max_delay_ms=timing.max_delay_ms,
        min_interval_ms=timing.min_interval_ms,
        deadline_ms=timing.deadline_ms,
    )


def to_task_status(
    result: TaskResult,
    policy: provider_adapter_pb2.PollPolicy,
    stored: common_pb2.StoredObject | None = None,
    *,
    charges_failures: bool = False,
) -> provider_adapter_pb2.TaskStatus:
    """The TaskStatus message of an engine result; ``stored`` is its first output, already stored.

    Outputs the adapter would have to store itself are reported only as ``stored`` (the first one);
    plain URLs are listed for storage's ingest.
    """
    outputs: list[provider_adapter_pb2.ResultOutput] = []
    if stored is not None:
        outputs.append(provider_adapter_pb2.ResultOutput(content_type=stored.content_type, stored=stored))
    outputs.extend(
        provider_adapter_pb2.ResultOutput(url=output.url, content_type=output.content_type)
        for output in result.outputs
        if not output.needs_upload
    )
    return provider_adapter_pb2.TaskStatus(
        state=_STATES[result.state],
        # Provider text is capped here too, the one way out: our context plus one quoted answer.
        raw_state=result.raw_state[:MAX_TEXT],
        task_id=result.task_id,
        task_handle_json=json.dumps(result.handle, separators=(",", ":")) if result.handle else "",
        progress=result.progress,
        error_message=result.error_message[: 2 * MAX_TEXT],
        error_code=result.error_code[:MAX_TEXT],
        outputs=outputs,
        poll_after_ms=result.poll_after_ms,
        poll_policy=policy,
        usage=provider_adapter_pb2.Usage(**result.usage) if result.usage else None,
        charges_failures=charges_failures,
    )


def provider_message(row: ProviderRow) -> common_pb2.Provider:
    """The Provider message of a row; the key itself never leaves, only whether there is one."""
    return common_pb2.Provider(
        id=row.id,
        name=row.name,
        preset=row.preset,
        base_url=row.base_url,
        has_api_key=row.api_key_encrypted is not None or bool(row.api_key_ref),
        profile_json=row.profile_json,
        created_at=_timestamp(row.created_at),
        updated_at=_timestamp(row.updated_at),
        max_concurrency=row.max_concurrency,
    )


def key_message(view: KeyView) -> gateway_pb2.ProviderKey:
    """The ProviderKey message of a pool key: its settings and load, never the key."""
    return gateway_pb2.ProviderKey(
        id=view.row.id,
        name=view.row.name,
        state=view.state,
        max_concurrency=view.row.max_concurrency,
        in_flight=view.in_flight,
        last_error=view.row.last_error,
        weight=view.row.weight,
        enabled=view.row.enabled and not view.row.deleted,
        cooled_until=_timestamp(view.row.cooled_until) if view.cooling else None,
    )


@lru_cache(maxsize=1024)
def _model_variables(profile_json: str, request_schema_json: str, api_endpoint: str) -> TemplateVariables:
    """What a task of the model needs: its template's variables and those of its ``api_endpoint`` and
    of the provider's submit request (URL, query, headers), as a generation is checked against."""
    template = json.loads(request_schema_json)
    try:
        data = json.loads(profile_json)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("submit", {}).get("request"), dict):
        return inspect_template([template, api_endpoint])
    return submit_variables(data, template, api_endpoint)


def model_message(row: ModelRow, provider: ProviderRow) -> common_pb2.Model:
    """The Model message of a row, with the variables a task of it uses and requires."""
    variables = _model_variables(provider.profile_json, row.request_schema_json, row.api_endpoint)
    return common_pb2.Model(
        id=row.id,
        name=row.name,
        provider=provider.name,
        model_type=row.model_type,  # type: ignore[arg-type]
        api_endpoint=row.api_endpoint,
        request_schema_json=row.request_schema_json,
        variables=variables.variables,
        required_variables=variables.required,
        price_json=row.price_json or "",
        created_at=_timestamp(row.created_at),
        updated_at=_timestamp(row.updated_at),
    )
