"""GetUsage: what settled generations cost, from the cost ledger, grouped, in one currency.

A project's caller sees its own project only (naming another answers NOT_FOUND, as for its boxes);
an admin sees every project, or the one named. ``since``/``until`` take an RFC 3339 moment or a UTC
day (``until`` a day means before that day).
"""

from __future__ import annotations

import datetime as dt

from assetgen.v1 import gateway_pb2
from assetgen_orchestrator.access import AccessStore
from assetgen_orchestrator.cost_ledger import CostLedger, UsageQuery
from assetgen_orchestrator.scope import caller_project
from assetgen_runtime.errors import InvalidArgument, NotFound
from assetgen_runtime.money import format_nanos

__all__ = ["get_usage", "parse_moment"]


def parse_moment(text: str, what: str) -> dt.datetime | None:
    """An RFC 3339 moment or a day (its midnight, UTC); None for ''; InvalidArgument otherwise."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"{what} must be an RFC 3339 time or a day YYYY-MM-DD, got {text[:40]!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


async def get_usage(
    ledger: CostLedger, access: AccessStore, request: gateway_pb2.GetUsageRequest, context: object
) -> gateway_pb2.GetUsageResponse:
    """The GetUsage answer for this caller."""
    project = caller_project(context)
    if request.project:
        try:
            named = (await access.get_project(request.project)).id
        except NotFound:
            named = ""
        if not named or (project and named != project):
            raise NotFound(f"project {request.project!r} not found")
        project = named
    groups = await ledger.usage(
        UsageQuery(
            group_by=request.group_by or "project",
            project_id=project,
            box_id=request.box,
            model=request.model,
            currency=request.currency,
            since=parse_moment(request.since, "since"),
            until=parse_moment(request.until, "until"),
        )
    )
    currencies = sorted({group.currency for group in groups})
    if len(currencies) > 1:
        raise InvalidArgument(
            f"charges in several currencies match ({', '.join(currencies)}); pass currency= to pick one"
        )
    return gateway_pb2.GetUsageResponse(
        items=[
            gateway_pb2.UsageItem(
                group=group.group,
                count=group.count,
                amount=format_nanos(group.nanos),
                currency=group.currency,
            )
            for group in groups
        ],
        total=format_nanos(sum(group.nanos for group in groups)),
        currency=currencies[0] if currencies else "",
    )
