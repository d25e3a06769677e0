"""The commands of the ``assetgen`` CLI: each one calls the gateway's gRPC API and prints the answer.

Every command takes the shared ``Cli`` and its parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from assetgen.v1 import common_pb2, gateway_pb2
from assetgen_cli.context import (
    EXIT_FAILED,
    EXIT_OK,
    Cli,
    UsageError,
    model_type_name,
    source_type_name,
    status_name,
)
from assetgen_runtime.codec import message_to_json
from assetgen_runtime.jsontext import NotAJsonObject, parse_json_object

__all__ = [
    "asset_cancel",
    "asset_retry",
    "asset_show",
    "boxes_create",
    "boxes_list",
    "generate",
    "models_add",
    "models_list",
    "presets_list",
    "providers_add",
    "providers_list",
    "providers_set",
    "upload",
    "watch",
]

_UPLOAD_CHUNK = 256 * 1024
_MAX_RECONNECTS = 5
_TERMINAL = {
    common_pb2.ASSET_STATUS_COMPLETED,
    common_pb2.ASSET_STATUS_FAILED,
    common_pb2.ASSET_STATUS_CANCELED,
}


async def presets_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints the presets providers can be created from."""
    response = await cli.api.ListPresets(
        gateway_pb2.ListPresetsRequest(), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for preset in response.items:
            cli.line(preset.name, preset.description)

    cli.show(response, human)
    return EXIT_OK


async def providers_add(cli: Cli, args: argparse.Namespace) -> int:
    """Adds a provider account from a preset; the API key is read from the named variable."""
    api_key = ""
    if args.api_key_env:
        api_key = cli.environ.get(args.api_key_env, "")
        if not api_key:
            raise UsageError(f"environment variable {args.api_key_env} is not set or empty")
    parts = _key_parts(cli, args.api_key_part)
    if api_key and parts:
        raise UsageError("give --api-key-env or --api-key-part, not both")
    provider = await cli.api.CreateProvider(
        gateway_pb2.CreateProviderRequest(
            name=args.name,
            preset=args.preset,
            base_url=args.base_url or "",
            api_key=api_key,
            api_key_parts=parts,
            max_concurrency=args.max_concurrency,
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(provider, lambda: cli.line(provider.id, provider.name, provider.preset, provider.base_url))
    if provider.warning:
        cli.note(f"warning: {provider.warning}")
    return EXIT_OK


async def providers_set(cli: Cli, args: argparse.Namespace) -> int:
    """Changes a provider's overall concurrency limit."""
    provider = await cli.api.UpdateProvider(
        gateway_pb2.UpdateProviderRequest(id=args.provider, max_concurrency=args.max_concurrency),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    limit = provider.max_concurrency or "no limit"
    cli.show(provider, lambda: cli.line(provider.name, f"max_concurrency {limit}"))
    return EXIT_OK


def _key_parts(cli: Cli, items: list[str]) -> dict[str, str]:
    """``NAME=env:VAR`` items as {name: the variable's value}; values never come from the command line."""
    parts: dict[str, str] = {}
    for item in items:
        name, _, source = item.partition("=")
        kind, _, variable = source.partition(":")
        if not name or kind != "env" or not variable:
            raise UsageError(f"--api-key-part {item!r}: expected NAME=env:VAR")
        value = cli.environ.get(variable, "")
        if not value:
            raise UsageError(f"environment variable {variable} is not set or empty")
        parts[name] = value
    return parts


async def providers_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints the provider accounts, never their API keys."""
    response = await cli.api.ListProviders(
        gateway_pb2.ListProvidersRequest(), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for provider in response.items:
            key = "key set" if provider.has_api_key else "no key"
            limit = [f"max_concurrency {provider.max_concurrency}"] if provider.max_concurrency else []
            cli.line(provider.name, provider.preset or "(inline)", provider.base_url, key, *limit)

    cli.show(response, human)
    return EXIT_OK


async def models_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints the models with their type and template variables."""
    response = await cli.api.ListModels(
        gateway_pb2.ListModelsRequest(provider=args.provider or ""),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )

    def human() -> None:
        for model in response.items:
            required = set(model.required_variables)
            variables = ", ".join(v + ("*" if v in required else "") for v in model.variables)
            cli.line(model.name, model.provider, model_type_name(model.model_type), f"variables: {variables}")
        if response.items:
            cli.note("(* = required variable)")

    cli.show(response, human)
    return EXIT_OK


def _read_schema(value: str) -> str:
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read schema file {value[1:]}: {exc.strerror}") from None
    try:
        return json.dumps(parse_json_object(text, "--schema"))
    except NotAJsonObject as exc:
        raise UsageError(str(exc)) from None


async def models_add(cli: Cli, args: argparse.Namespace) -> int:
    """Adds a model with its submit body template."""
    model = await cli.api.CreateModel(
        gateway_pb2.CreateModelRequest(
            provider=args.provider,
            name=args.name,
            model_type=common_pb2.ModelType.Value(f"MODEL_TYPE_{args.type}"),
            api_endpoint=args.endpoint or "",
            request_schema_json=_read_schema(args.schema),
            price_json=args.price or "",
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(model, lambda: cli.line(model.id, model.name, model.provider, model_type_name(model.model_type)))
    return EXIT_OK


async def boxes_create(cli: Cli, args: argparse.Namespace) -> int:
    """Creates a box and prints its id."""
    box = await cli.api.CreateBox(
        gateway_pb2.CreateBoxRequest(name=args.name), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(box, lambda: cli.line(box.id, box.name))
    return EXIT_OK


async def boxes_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints the boxes, newest first."""
    response = await cli.api.ListBoxes(
        gateway_pb2.ListBoxesRequest(page_size=args.limit), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for box in response.items:
            cli.line(box.id, box.name, box.created_at.ToJsonString())

    cli.show(response, human)
    return EXIT_OK


async def _upload_file(cli: Cli, box_id: str, path: Path) -> common_pb2.Asset:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    async def messages() -> AsyncIterator[gateway_pb2.UploadRequest]:
        yield gateway_pb2.UploadRequest(
            metadata=gateway_pb2.UploadMetadata(box_id=box_id, filename=path.name, content_type=content_type)
        )
        with path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, _UPLOAD_CHUNK):
                yield gateway_pb2.UploadRequest(chunk=chunk)

    # An upload takes as long as the file needs; the per-call timeout would cut large files short.
    return await cli.api.Upload(messages(), metadata=cli.metadata, timeout=None)


def _asset_summary(cli: Cli, asset: common_pb2.Asset) -> None:
    cli.line(asset.id, status_name(asset.status), asset.file_url or asset.error_message)


async def upload(cli: Cli, args: argparse.Namespace) -> int:
    """Uploads a file into a box and prints the new asset."""
    asset = await _upload_file(cli, args.box, Path(args.file))
    cli.show(asset, lambda: _asset_summary(cli, asset))
    return EXIT_OK


def _config(pairs: Sequence[str]) -> str:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes key=value (or key:=JSON), not {pair!r}")
        if key.endswith(":"):
            try:
                config[key[:-1]] = json.loads(value)
            except ValueError as exc:
                raise UsageError(f"--set {key}= value is not valid JSON: {exc}") from None
        else:
            config[key] = value
    return json.dumps(config) if config else ""


async def generate(cli: Cli, args: argparse.Namespace) -> int:
    """Starts a generation; with ``--wait`` follows it and exits 1 unless it COMPLETED."""
    config_json = _config(args.set or [])
    image_url = ""
    if args.image:
        if args.image.startswith(("http://", "https://")):
            image_url = args.image
        else:
            uploaded = await _upload_file(cli, args.box, Path(args.image))
            cli.note(f"uploaded {args.image} as {uploaded.id}")
            image_url = uploaded.file_url
    asset = await cli.api.Generate(
        gateway_pb2.GenerateRequest(
            box_id=args.box,
            model=args.model,
            prompt=args.prompt,
            image_url=image_url,
            parent_asset=args.parent or "",
            config_json=config_json,
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    if not args.wait:
        cli.show(asset, lambda: _asset_summary(cli, asset))
        return EXIT_OK
    cli.note(f"{asset.id} {status_name(asset.status)}")
    last = (asset.status, asset.progress)

    def open_stream(after: int) -> Any:
        request = gateway_pb2.WatchAssetRequest(asset_id=asset.id, after_sequence=after)
        return cli.api.WatchAsset(request, metadata=cli.metadata)

    events = _follow(cli, open_stream, 0)
    try:
        async for event in events:
            if (event.status, event.progress) != last:
                last = (event.status, event.progress)
                progress = f" {event.progress:.0%}" if event.progress else ""
                cli.note(f"{asset.id} {status_name(event.status)}{progress}")
            if event.status in _TERMINAL:
                break
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    final = await cli.api.GetAsset(
        gateway_pb2.GetAssetRequest(id=asset.id), metadata=cli.metadata, timeout=cli.timeout
    )
    if cli.as_json:
        cli.print_json(final)
    elif final.status == common_pb2.ASSET_STATUS_COMPLETED:
        cli.line(final.file_url)
    else:
        cli.note(f"{final.id} {status_name(final.status)}: {final.error_message or 'no file'}")
    return EXIT_OK if final.status == common_pb2.ASSET_STATUS_COMPLETED else EXIT_FAILED


async def _follow(
    cli: Cli, open_stream: Callable[[int], Any], after: int
) -> AsyncIterator[gateway_pb2.AssetEvent]:
    """A watch's events across reconnects: a lost stream resumes after the last event seen.

    A gateway shutting down ends its streams; the next replica carries on from ``after`` so no
    event is missed. Gives up after a few failed attempts in a row.
    """
    failures = 0
    while True:
        stream = open_stream(after)
        received = False
        try:
            async for event in stream:
                received = True
                failures = 0
                after = max(after, event.sequence)
                yield event
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or failures >= _MAX_RECONNECTS:
                raise
        else:
            if not received:
                return  # resumed after the end (an asset's terminal event): nothing more will come
        finally:
            stream.cancel()
        failures += 1
        cli.note(f"stream interrupted; resuming after event {after}")
        await asyncio.sleep(min(0.2 * 2**failures, 5.0))


async def watch(cli: Cli, args: argparse.Namespace) -> int:
    """Prints a box's assets, then each change, until interrupted."""

    def open_stream(after: int) -> Any:
        request = gateway_pb2.WatchBoxRequest(box_id=args.box, after_sequence=after)
        return cli.api.WatchBox(request, metadata=cli.metadata)

    events = _follow(cli, open_stream, args.after)
    try:
        async for event in events:
            if cli.as_json:
                # One JSON object per line, so the stream can be piped into jq.
                print(json.dumps(message_to_json(event), ensure_ascii=False), file=cli.out, flush=True)
                continue
            detail = event.file_url or event.error_message
            progress = f"{event.progress:.0%}" if event.progress else ""
            cli.line(event.sequence, event.asset_id, status_name(event.status), progress, detail)
            cli.out.flush()
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return EXIT_OK


def _asset_details(cli: Cli, asset: common_pb2.Asset) -> None:
    fields = {
        "id": asset.id,
        "box": asset.box,
        "status": status_name(asset.status),
        "source": source_type_name(asset.source_type),
        "model": asset.model,
        "prompt": asset.prompt,
        "parent": asset.parent_asset,
        "attempt": asset.attempt,
        "progress": f"{asset.progress:.0%}" if asset.progress else "",
        "error": asset.error_message,
        "content type": asset.content_type,
        "size": asset.size_bytes or "",
        "file url": asset.file_url,
        "created": asset.created_at.ToJsonString() if asset.HasField("created_at") else "",
        "updated": asset.updated_at.ToJsonString() if asset.HasField("updated_at") else "",
    }
    for name, value in fields.items():
        if value not in ("", None):
            print(f"{name + ':':14}{value}", file=cli.out)


async def asset_show(cli: Cli, args: argparse.Namespace) -> int:
    """Prints one asset with a fresh file URL."""
    asset = await cli.api.GetAsset(
        gateway_pb2.GetAssetRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(asset, lambda: _asset_details(cli, asset))
    return EXIT_OK


async def asset_cancel(cli: Cli, args: argparse.Namespace) -> int:
    """Cancels an in-flight generation."""
    asset = await cli.api.CancelAsset(
        gateway_pb2.CancelAssetRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(asset, lambda: _asset_summary(cli, asset))
    return EXIT_OK


async def asset_retry(cli: Cli, args: argparse.Namespace) -> int:
    """Retries a FAILED or CANCELED generation."""
    asset = await cli.api.RetryAsset(
        gateway_pb2.RetryAssetRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(asset, lambda: _asset_summary(cli, asset))
    return EXIT_OK
