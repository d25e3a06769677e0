"""The CLI's commands for a provider's key pool (admin): ``assetgen provider-keys …``.

A key's value is read from an environment variable named on the command line (never the value
itself), or given as a reference the provider-adapter resolves (``env:…``, ``file:…``).
"""

from __future__ import annotations

import argparse

from assetgen.v1 import gateway_pb2
from assetgen_cli.context import EXIT_OK, Cli, UsageError

__all__ = ["keys_add", "keys_delete", "keys_list", "keys_set"]


def _line(cli: Cli, key: gateway_pb2.ProviderKey) -> None:
    limit = key.max_concurrency or "-"
    cli.line(key.id, key.name, key.state, f"{key.in_flight}/{limit}", f"weight {key.weight}", key.last_error)


async def keys_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints a provider's pool keys with their tasks in flight."""
    response = await cli.api.ListProviderKeys(
        gateway_pb2.ListProviderKeysRequest(provider=args.provider),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )

    def human() -> None:
        for key in response.items:
            _line(cli, key)

    cli.show(response, human)
    return EXIT_OK


async def keys_add(cli: Cli, args: argparse.Namespace) -> int:
    """Adds a key to a provider's pool."""
    api_key = ""
    if args.api_key_env:
        api_key = cli.environ.get(args.api_key_env, "")
        if not api_key:
            raise UsageError(f"environment variable {args.api_key_env} is not set or empty")
    if bool(api_key) == bool(args.api_key_ref):
        raise UsageError("give exactly one of --api-key-env and --api-key-ref")
    key = await cli.api.CreateProviderKey(
        gateway_pb2.CreateProviderKeyRequest(
            provider=args.provider,
            name=args.name,
            api_key=api_key,
            api_key_ref=args.api_key_ref or "",
            max_concurrency=args.max_concurrency,
            weight=args.weight,
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(key, lambda: _line(cli, key))
    return EXIT_OK


async def keys_set(cli: Cli, args: argparse.Namespace) -> int:
    """Enables or disables a key, or changes its limits."""
    request = gateway_pb2.UpdateProviderKeyRequest(provider=args.provider, id=args.id)
    if args.enable or args.disable:
        request.enabled = bool(args.enable)
    if args.max_concurrency is not None:
        request.max_concurrency = args.max_concurrency
    if args.weight is not None:
        request.weight = args.weight
    key = await cli.api.UpdateProviderKey(request, metadata=cli.metadata, timeout=cli.timeout)
    cli.show(key, lambda: _line(cli, key))
    return EXIT_OK


async def keys_delete(cli: Cli, args: argparse.Namespace) -> int:
    """Takes a key out of the pool (it drains its tasks in flight)."""
    response = await cli.api.DeleteProviderKey(
        gateway_pb2.DeleteProviderKeyRequest(provider=args.provider, id=args.id),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(response, lambda: cli.note(f"deleted key {args.id} of {args.provider}"))
    return EXIT_OK
