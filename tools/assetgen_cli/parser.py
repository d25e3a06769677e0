"""The argument parser of the ``assetgen`` CLI: every command, its arguments and its help."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from assetgen_cli import access_commands, commands, provider_key_commands, usage_commands, webhook_commands
from assetgen_cli.context import DEFAULT_URL, Cli

__all__ = ["build_parser"]

Command = Callable[[Cli, argparse.Namespace], Coroutine[Any, Any, int]]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilogs' line breaks (examples, exit codes)."""


_EPILOG = """\
environment:
  ASSETGEN_URL         host:port of the gateway's gRPC API (default 127.0.0.1:50051)
  ASSETGEN_TOKEN       bearer API token (an API key, or the admin token make run prints)
  ASSETGEN_TOKEN_FILE  file whose first line is the token, when ASSETGEN_TOKEN is not set

exit codes:
  0  done (generate --wait: the asset COMPLETED)
  1  the asset FAILED or was CANCELED, or the server failed the call
  2  usage error, or a request the API refused as invalid
  3  cannot reach the gateway, or the token was refused (unknown, revoked, or lacking the scope)

from a new deployment to a generated image and video:
  assetgen presets list
  export KIE_API_KEY=...
  assetgen providers add kie --preset kie-ai --base-url https://api.kie.ai --api-key-env KIE_API_KEY
  assetgen models add nano-banana --provider kie --type IMAGE --schema @nano-banana.json
  assetgen providers add openai --preset openai-images --api-key-env OPENAI_API_KEY
  assetgen models add gpt-image-2 --provider openai --type IMAGE \
    --schema '{"model": "gpt-image-2", "prompt": "{{prompt}}", "size": "1024x1024"}'
  assetgen providers add kling --preset kling \
    --api-key-part access_key=env:KLING_ACCESS_KEY --api-key-part secret_key=env:KLING_SECRET_KEY
  assetgen models list
  assetgen boxes create campaign
  assetgen generate BOX --model nano-banana --prompt "a red fox" --wait
  assetgen generate BOX --model veo --prompt "the fox runs" --parent ASSET --set duration=8 --wait
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command; each leaf sets ``func`` to its coroutine."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the same JSON as the HTTP API instead of text",
    )
    parser = argparse.ArgumentParser(
        prog="assetgen",
        description="Manage an AssetGen deployment: providers, models, boxes, uploads and generations.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
        parents=[common],
    )
    parser.add_argument("--url", help=f"gateway gRPC host:port (default: $ASSETGEN_URL or {DEFAULT_URL})")
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the API token from FILE (default: $ASSETGEN_TOKEN, then $ASSETGEN_TOKEN_FILE)",
    )
    tokens.add_argument("--token", help="API token; prefer --token-file or $ASSETGEN_TOKEN (kept off ps)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds each call may take (default 30)")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        sub = subcommands.add_parser(name, help=help_text, description=help_text)
        return sub.add_subparsers(dest="action", metavar="ACTION", required=True)

    def leaf(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, func: Command
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(func=func)
        return sub

    presets = group("presets", "provider presets shipped with AssetGen")
    leaf(presets, "list", "list the presets providers can be created from", commands.presets_list)

    providers = group("providers", "AI provider accounts")
    add = leaf(providers, "add", "add a provider account from a preset", commands.providers_add)
    add.add_argument("name", help="unique provider name")
    add.add_argument("--preset", required=True, help="preset name, e.g. kie-ai (see: assetgen presets list)")
    add.add_argument("--base-url", help="the provider's API base URL (default: the preset's)")
    add.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key; read here and sent, never put on the command line",
    )
    add.add_argument(
        "--api-key-part",
        action="append",
        default=[],
        metavar="NAME=env:VAR",
        help="one named part of a key of parts (repeat: kling needs access_key and secret_key), read from "
        "environment variable VAR here; instead of --api-key-env",
    )
    add.add_argument(
        "--max-concurrency",
        type=int,
        default=0,
        help="most tasks at once over all its keys (0: no overall limit); more wait in its queue",
    )
    leaf(providers, "list", "list providers (the API key is never shown)", commands.providers_list)
    change = leaf(providers, "set", "change a provider's overall limit", commands.providers_set)
    change.add_argument("provider", help="provider id or name")
    change.add_argument(
        "--max-concurrency",
        type=int,
        required=True,
        help="most tasks at once over all its keys (0: no limit)",
    )

    pool = group("provider-keys", "a provider's key pool: several API keys sharing its work (admin)")
    listing = leaf(
        pool, "list", "list a provider's keys with their tasks in flight", provider_key_commands.keys_list
    )
    listing.add_argument("provider", help="provider id or name")
    add = leaf(pool, "add", "add a key to a provider's pool", provider_key_commands.keys_add)
    add.add_argument("provider", help="provider id or name")
    add.add_argument("name", help="which account the key is")
    add.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the key")
    add.add_argument("--api-key-ref", metavar="REF", help="env:ASSETGEN_PROVIDER_KEY_<NAME> or file:<name>")
    add.add_argument("--max-concurrency", type=int, default=0, help="most tasks at once (0: no limit)")
    add.add_argument("--weight", type=int, default=1, help="share of new work (default 1)")
    change = leaf(
        pool, "set", "enable or disable a key, or change its limits", provider_key_commands.keys_set
    )
    change.add_argument("provider", help="provider id or name")
    change.add_argument("id", help="key id (pkey_...)")
    state = change.add_mutually_exclusive_group()
    state.add_argument("--enable", action="store_true", help="take new work again")
    state.add_argument("--disable", action="store_true", help="take no new work (its tasks drain)")
    change.add_argument("--max-concurrency", type=int, help="most tasks at once (0: no limit)")
    change.add_argument("--weight", type=int, help="share of new work")
    remove = leaf(pool, "delete", "take a key out of the pool", provider_key_commands.keys_delete)
    remove.add_argument("provider", help="provider id or name")
    remove.add_argument("id", help="key id (pkey_...)")

    models = group("models", "models offered by providers")
    listing = leaf(models, "list", "list models, their type and template variables", commands.models_list)
    listing.add_argument("--provider", help="only this provider's models")
    add = leaf(models, "add", "add a model with its request template", commands.models_add)
    add.add_argument("name", help="unique model name")
    add.add_argument("--provider", required=True, help="provider id or name")
    add.add_argument(
        "--type", required=True, choices=["IMAGE", "VIDEO"], type=str.upper, help="what the model makes"
    )
    add.add_argument(
        "--schema",
        required=True,
        metavar="JSON|@FILE",
        help="submit body template, JSON text or @file, with {{prompt}}, {{image_urls}}, {{optional?}}",
    )
    add.add_argument("--endpoint", metavar="PATH", help="submit path overriding the provider profile's")
    add.add_argument(
        "--price",
        metavar="JSON",
        help='price, e.g. \'{"currency": "USD", "per_request": "0.04"}\' (amounts as decimal strings)',
    )

    boxes = group("boxes", "boxes that group the assets of one piece of work")
    create = leaf(boxes, "create", "create a box and print its id", commands.boxes_create)
    create.add_argument("name", help="human name of the box")
    listing = leaf(boxes, "list", "list boxes, newest first", commands.boxes_list)
    listing.add_argument("--limit", type=int, default=50, help="how many boxes (default 50)")

    upload = subcommands.add_parser(
        "upload",
        help="upload an image or video into a box",
        description="Upload an image or video into a box and print the new asset.",
        parents=[common],
    )
    upload.set_defaults(func=commands.upload)
    upload.add_argument("box", help="box id")
    upload.add_argument("file", help="path of the file")

    generate = subcommands.add_parser(
        "generate",
        help="generate an image or video in a box, optionally waiting for the file",
        description="Start a generation in a box. Without --wait it prints the PENDING asset and returns; "
        "with --wait it shows live progress and prints the file URL at the end (exit 1 if it fails).",
        parents=[common],
    )
    generate.set_defaults(func=commands.generate)
    generate.add_argument("box", help="box id")
    generate.add_argument("--model", required=True, help="model id or name")
    generate.add_argument("--prompt", required=True, help="the prompt ({{prompt}})")
    generate.add_argument("--image", metavar="FILE|URL", help="input image: a URL, or a file uploaded first")
    generate.add_argument(
        "--parent", metavar="ASSET", help="asset whose file is the input image (image to video)"
    )
    generate.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="extra template variable (repeatable); KEY:=JSON for a non-string value",
    )
    generate.add_argument("--wait", action="store_true", help="follow the asset until it finishes")

    watch = subcommands.add_parser(
        "watch",
        help="follow a box's assets live",
        description="Print the current state of a box's assets, then every change as it happens "
        "(Ctrl-C stops). Each line starts with the event sequence; --after SEQ resumes after it.",
        parents=[common],
    )
    watch.set_defaults(func=commands.watch)
    watch.add_argument("box", help="box id")
    watch.add_argument("--after", type=int, default=0, metavar="SEQ", help="resume after this event sequence")

    projects = group("projects", "projects: the boxes of one team or service, and its keys (admin)")
    leaf(projects, "list", "list projects by name", access_commands.projects_list)
    create = leaf(projects, "create", "create a project", access_commands.projects_create)
    create.add_argument("name", help="unique name: lower-case letters, digits, '-' and '_'")
    create.add_argument("--budget", metavar="AMOUNT", help="most its generations may cost, e.g. 100.00")
    budget = leaf(
        projects, "budget", "set a project's budget ('' removes it)", usage_commands.projects_budget
    )
    budget.add_argument("project", help="project id or name")
    budget.add_argument("amount", help="decimal amount, e.g. 100.00, or '' for no budget")
    get = leaf(projects, "get", "show a project", access_commands.projects_get)
    get.add_argument("project", help="project id or name")
    rename = leaf(projects, "rename", "rename a project", access_commands.projects_rename)
    rename.add_argument("project", help="project id or name")
    rename.add_argument("name", help="new unique name")
    delete = leaf(
        projects,
        "delete",
        "delete a project that has no boxes, with its keys",
        access_commands.projects_delete,
    )
    delete.add_argument("project", help="project id or name")

    spend = leaf(
        subcommands,
        "usage",
        "what settled generations cost, grouped (a project's key: its own project)",
        usage_commands.usage,
    )
    spend.add_argument(
        "--group-by",
        default="project",
        choices=["project", "box", "model", "key", "day"],
        help="what each line sums (default project)",
    )
    for name, text in (
        ("--project", "only this project (id or name)"),
        ("--box", "only this box"),
        ("--model", "only this model"),
        ("--since", "settled at or after: RFC 3339 time or YYYY-MM-DD"),
        ("--until", "settled before: RFC 3339 time or YYYY-MM-DD"),
        ("--currency", "only this currency (needed when several match)"),
    ):
        spend.add_argument(name, help=text)

    keys = group("keys", "API keys of projects, with scopes read, write, admin (admin)")
    listing = leaf(keys, "list", "list keys (never their secrets)", access_commands.keys_list)
    listing.add_argument("--project", help="only this project's keys (id or name)")
    create = leaf(
        keys,
        "create",
        "create a key; its secret is printed once, alone on stdout",
        access_commands.keys_create,
    )
    create.add_argument("name", help="who or what uses the key")
    create.add_argument("--project", required=True, help="project id or name")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        metavar="SCOPE",
        help="read, write or admin (repeatable, or comma-separated); write includes read",
    )
    revoke = leaf(keys, "revoke", "revoke a key: refused from now on", access_commands.keys_revoke)
    revoke.add_argument("id", help="key id (key_...)")

    hooks = group("webhooks", "webhook endpoints: signed asset events POSTed to your URLs (write scope)")
    leaf(hooks, "list", "list endpoints (never their secrets)", webhook_commands.webhooks_list)
    create = leaf(
        hooks,
        "create",
        "register an endpoint; its signing secret is printed once, alone on stdout",
        webhook_commands.webhooks_create,
    )
    # Not "url": that is the gateway's address (--url).
    create.add_argument("destination", metavar="URL", help="where deliveries are POSTed")
    create.add_argument(
        "--event",
        action="append",
        metavar="EVENT",
        help="asset.processing, asset.completed, asset.failed or asset.canceled (repeatable, or "
        "comma-separated; default all)",
    )
    create.add_argument("--box", help="only this box's assets")
    create.add_argument("--project", help="the project (admin keys only; default: default)")
    for name, func, text in (
        ("enable", webhook_commands.webhooks_enable, "turn an endpoint on"),
        ("disable", webhook_commands.webhooks_disable, "turn an endpoint off"),
        ("delete", webhook_commands.webhooks_delete, "delete an endpoint and its delivery log"),
    ):
        leaf(hooks, name, text, func).add_argument("id", help="webhook id (whk_...)")
    deliveries = leaf(
        hooks,
        "deliveries",
        "list an endpoint's deliveries, newest first",
        webhook_commands.webhooks_deliveries,
    )
    deliveries.add_argument("id", help="webhook id (whk_...)")
    deliveries.add_argument("--limit", type=int, default=50, help="how many (at most 500)")
    redeliver = leaf(hooks, "redeliver", "send a delivery again", webhook_commands.webhooks_redeliver)
    redeliver.add_argument("id", help="webhook id (whk_...)")
    redeliver.add_argument("delivery", help="delivery id (msg_...)")

    asset = group("asset", "one asset")
    show = leaf(asset, "show", "show an asset with a fresh file URL", commands.asset_show)
    show.add_argument("id", help="asset id")
    cancel = leaf(asset, "cancel", "cancel an in-flight generation", commands.asset_cancel)
    cancel.add_argument("id", help="asset id")
    retry = leaf(asset, "retry", "retry a FAILED or CANCELED generation", commands.asset_retry)
    retry.add_argument("id", help="asset id")
    return parser
