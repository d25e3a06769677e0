"""The CLI's commands for webhook endpoints: ``assetgen webhooks …``.

A new endpoint's signing secret is printed once, alone on stdout (``SECRET=$(assetgen webhooks
create URL)``), its details on stderr; it cannot be shown again.
"""

from __future__ import annotations

import argparse

from assetgen.v1 import gateway_pb2
from assetgen_cli.context import EXIT_OK, Cli

__all__ = [
    "webhooks_create",
    "webhooks_delete",
    "webhooks_deliveries",
    "webhooks_disable",
    "webhooks_enable",
    "webhooks_list",
    "webhooks_redeliver",
]


def _events(values: list[str] | None) -> list[str]:
    return [event for value in values or () for event in value.split(",") if event]


def _endpoint_line(cli: Cli, endpoint: gateway_pb2.WebhookEndpoint) -> None:
    state = "enabled" if endpoint.enabled else f"disabled {endpoint.disabled_reason}".strip()
    cli.line(endpoint.id, endpoint.url, ",".join(endpoint.events), endpoint.box or endpoint.project, state)


async def webhooks_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints the endpoints, newest first (never their secrets)."""
    response = await cli.api.ListWebhooks(
        gateway_pb2.ListWebhooksRequest(), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for endpoint in response.items:
            _endpoint_line(cli, endpoint)

    cli.show(response, human)
    return EXIT_OK


async def webhooks_create(cli: Cli, args: argparse.Namespace) -> int:
    """Registers an endpoint; prints its secret once on stdout and what it is on stderr."""
    endpoint = await cli.api.CreateWebhook(
        gateway_pb2.CreateWebhookRequest(
            url=args.destination, events=_events(args.event), box=args.box or "", project=args.project or ""
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )

    def human() -> None:
        print(endpoint.secret, file=cli.out)
        cli.note(f"webhook {endpoint.id} -> {endpoint.url} ({','.join(endpoint.events)})")
        cli.note("the signing secret is shown only now: store it where your receiver reads it")

    cli.show(endpoint, human)
    return EXIT_OK


async def _set_enabled(cli: Cli, endpoint_id: str, enabled: bool) -> int:
    endpoint = await cli.api.UpdateWebhook(
        gateway_pb2.UpdateWebhookRequest(id=endpoint_id, enabled=enabled),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(endpoint, lambda: _endpoint_line(cli, endpoint))
    return EXIT_OK


async def webhooks_enable(cli: Cli, args: argparse.Namespace) -> int:
    """Turns an endpoint on (after a 410 turned it off, say)."""
    return await _set_enabled(cli, args.id, True)


async def webhooks_disable(cli: Cli, args: argparse.Namespace) -> int:
    """Turns an endpoint off: no deliveries until it is turned on."""
    return await _set_enabled(cli, args.id, False)


async def webhooks_delete(cli: Cli, args: argparse.Namespace) -> int:
    """Deletes an endpoint and its delivery log."""
    response = await cli.api.DeleteWebhook(
        gateway_pb2.DeleteWebhookRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(response, lambda: cli.note(f"deleted webhook {args.id}"))
    return EXIT_OK


def _delivery_line(cli: Cli, delivery: gateway_pb2.WebhookDelivery) -> None:
    cli.line(
        delivery.id,
        delivery.event,
        delivery.asset,
        delivery.status,
        f"tries={delivery.attempts}",
        f"last={delivery.last_status_code or '-'}",
        delivery.last_error,
    )


async def webhooks_deliveries(cli: Cli, args: argparse.Namespace) -> int:
    """Prints an endpoint's deliveries, newest first."""
    response = await cli.api.ListWebhookDeliveries(
        gateway_pb2.ListWebhookDeliveriesRequest(id=args.id, page_size=args.limit),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )

    def human() -> None:
        for delivery in response.items:
            _delivery_line(cli, delivery)

    cli.show(response, human)
    return EXIT_OK


async def webhooks_redeliver(cli: Cli, args: argparse.Namespace) -> int:
    """Sends a delivery again (same webhook-id and body)."""
    delivery = await cli.api.RedeliverWebhook(
        gateway_pb2.RedeliverWebhookRequest(id=args.id, delivery_id=args.delivery),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(delivery, lambda: _delivery_line(cli, delivery))
    return EXIT_OK
