"""The CLI's commands for spend: ``assetgen usage`` (the cost ledger's sums) and project budgets.

Amounts are printed exactly as the API gives them, decimal strings; a project's key sees its own
project's usage only.
"""

from __future__ import annotations

import argparse

from assetgen.v1 import gateway_pb2
from assetgen_cli.context import EXIT_OK, Cli

__all__ = ["projects_budget", "usage"]


async def usage(cli: Cli, args: argparse.Namespace) -> int:
    """Prints what settled generations cost, a line per group, then the total."""
    response = await cli.api.GetUsage(
        gateway_pb2.GetUsageRequest(
            project=args.project or "",
            box=args.box or "",
            model=args.model or "",
            since=args.since or "",
            until=args.until or "",
            group_by=args.group_by,
            currency=args.currency or "",
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )

    def human() -> None:
        for item in response.items:
            cli.line(item.group, item.count, item.amount, item.currency)
        cli.line("total", sum(item.count for item in response.items), response.total, response.currency)

    cli.show(response, human)
    return EXIT_OK


async def projects_budget(cli: Cli, args: argparse.Namespace) -> int:
    """Sets (or with "" removes) a project's budget."""
    project = await cli.api.UpdateProject(
        gateway_pb2.UpdateProjectRequest(id=args.project, budget=args.amount),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(project, lambda: cli.line(project.id, project.name, project.budget or "(no budget)"))
    return EXIT_OK
