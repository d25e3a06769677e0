"""The ``assetgen`` command: operators' management of an AssetGen over the gateway's gRPC API.

It replaces the seed's management commands (``setup_kie_ai``, ``list_ai_models``, ``test_generation``,
``test_video_generation``). Exit codes scripts can trust:

- 0: done (for ``generate --wait``: the asset COMPLETED);
- 1: the asset FAILED or was CANCELED, or the server failed the call;
- 2: usage error — bad arguments, or a request the API refused as invalid (unknown id, bad schema…);
- 3: the gateway cannot be reached, or refused the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mimetypes
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.protobuf.message import Message

from assetgen.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from assetgen_runtime.codec import message_to_json

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
    "run_cli",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEFAULT_URL = "127.0.0.1:50051"
_UPLOAD_CHUNK = 256 * 1024
_MAX_RECONNECTS = 5
_USAGE_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
_UNREACHABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
_TERMINAL = {
    common_pb2.ASSET_STATUS_COMPLETED,
    common_pb2.ASSET_STATUS_FAILED,
    common_pb2.ASSET_STATUS_CANCELED,
}


class UsageError(Exception):
    """A mistake in the command line the parser could not catch (missing env var, unreadable file)."""


@dataclass
class Cli:
    """What every command gets: the API stub, call options and where to write."""

    api: gateway_pb2_grpc.GatewayServiceStub
    metadata: list[tuple[str, str]]
    timeout: float
    as_json: bool
    out: TextIO
    err: TextIO
    environ: Mapping[str, str]

    def print_json(self, message: Message) -> None:
        """The message as the HTTP API would return it."""
        print(json.dumps(message_to_json(message), ensure_ascii=False, indent=2), file=self.out)

    def show(self, message: Message, human: Callable[[], None]) -> None:
        """JSON with ``--json``, else the human form."""
        if self.as_json:
            self.print_json(message)
        else:
            human()

    def line(self, *parts: object) -> None:
        """One tab-free, space-separated line on stdout."""
        print("  ".join(str(part) for part in parts), file=self.out)

    def note(self, text: str) -> None:
        """Progress and hints, on stderr so stdout stays parseable."""
        print(text, file=self.err, flush=True)


def _status(value: int) -> str:
    return common_pb2.AssetStatus.Name(value).removeprefix("ASSET_STATUS_")


def _model_type(value: int) -> str:
    return common_pb2.ModelType.Name(value).removeprefix("MODEL_TYPE_")


def _source_type(value: int) -> str:
    return common_pb2.SourceType.Name(value).removeprefix("SOURCE_TYPE_")


# Commands.


async def _presets_list(cli: Cli, args: argparse.Namespace) -> int:
    response = await cli.api.ListPresets(
        gateway_pb2.ListPresetsRequest(), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for preset in response.items:
            cli.line(preset.name, preset.description)

    cli.show(response, human)
    return EXIT_OK


async def _providers_add(cli: Cli, args: argparse.Namespace) -> int:
    api_key = ""
    if args.api_key_env:
        api_key = cli.environ.get(args.api_key_env, "")
        if not api_key:
            raise UsageError(f"environment variable {args.api_key_env} is not set or empty")
    provider = await cli.api.CreateProvider(
        gateway_pb2.CreateProviderRequest(
            name=args.name, preset=args.preset, base_url=args.base_url or "", api_key=api_key
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(provider, lambda: cli.line(provider.id, provider.name, provider.preset, provider.base_url))
    return EXIT_OK


async def _providers_list(cli: Cli, args: argparse.Namespace) -> int:
    response = await cli.api.ListProviders(
        gateway_pb2.ListProvidersRequest(), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for provider in response.items:
            key = "key set" if provider.has_api_key else "no key"
            cli.line(provider.name, provider.preset or "(inline)", provider.base_url, key)

    cli.show(response, human)
    return EXIT_OK


async def _models_list(cli: Cli, args: argparse.Namespace) -> int:
    response = await cli.api.ListModels(
        gateway_pb2.ListModelsRequest(provider=args.provider or ""),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )

    def human() -> None:
        for model in response.items:
            required = set(model.required_variables)
            variables = ", ".join(v + ("*" if v in required else "") for v in model.variables)
            cli.line(model.name, model.provider, _model_type(model.model_type), f"variables: {variables}")
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
        parsed = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--schema is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise UsageError("--schema must be a JSON object")
    return json.dumps(parsed)


async def _models_add(cli: Cli, args: argparse.Namespace) -> int:
    model = await cli.api.CreateModel(
        gateway_pb2.CreateModelRequest(
            provider=args.provider,
            name=args.name,
            model_type=common_pb2.ModelType.Value(f"MODEL_TYPE_{args.type}"),
            api_endpoint=args.endpoint or "",
            request_schema_json=_read_schema(args.schema),
        ),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(model, lambda: cli.line(model.id, model.name, model.provider, _model_type(model.model_type)))
    return EXIT_OK


async def _boxes_create(cli: Cli, args: argparse.Namespace) -> int:
    box = await cli.api.CreateBox(
        gateway_pb2.CreateBoxRequest(name=args.name), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(box, lambda: cli.line(box.id, box.name))
    return EXIT_OK


async def _boxes_list(cli: Cli, args: argparse.Namespace) -> int:
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
    cli.line(asset.id, _status(asset.status), asset.file_url or asset.error_message)


async def _upload(cli: Cli, args: argparse.Namespace) -> int:
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


async def _generate(cli: Cli, args: argparse.Namespace) -> int:
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
    cli.note(f"{asset.id} {_status(asset.status)}")
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
                cli.note(f"{asset.id} {_status(event.status)}{progress}")
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
        cli.note(f"{final.id} {_status(final.status)}: {final.error_message or 'no file'}")
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


async def _watch(cli: Cli, args: argparse.Namespace) -> int:

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
            cli.line(event.sequence, event.asset_id, _status(event.status), progress, detail)
            cli.out.flush()
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return EXIT_OK


def _asset_details(cli: Cli, asset: common_pb2.Asset) -> None:
    fields = {
        "id": asset.id,
        "box": asset.box,
        "status": _status(asset.status),
        "source": _source_type(asset.source_type),
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


async def _asset_show(cli: Cli, args: argparse.Namespace) -> int:
    asset = await cli.api.GetAsset(
        gateway_pb2.GetAssetRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(asset, lambda: _asset_details(cli, asset))
    return EXIT_OK


async def _asset_cancel(cli: Cli, args: argparse.Namespace) -> int:
    asset = await cli.api.CancelAsset(
        gateway_pb2.CancelAssetRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(asset, lambda: _asset_summary(cli, asset))
    return EXIT_OK


async def _asset_retry(cli: Cli, args: argparse.Namespace) -> int:
    asset = await cli.api.RetryAsset(
        gateway_pb2.RetryAssetRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(asset, lambda: _asset_summary(cli, asset))
    return EXIT_OK


# The parser.

Command = Callable[[Cli, argparse.Namespace], Coroutine[Any, Any, int]]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilogs' line breaks (examples, exit codes)."""


_EPILOG = """\
environment:
  ASSETGEN_URL    host:port of the gateway's gRPC API (default 127.0.0.1:50051)
  ASSETGEN_TOKEN  bearer API token

exit codes:
  0  done (generate --wait: the asset COMPLETED)
  1  the asset FAILED or was CANCELED, or the server failed the call
  2  usage error, or a request the API refused as invalid
  3  cannot reach the gateway, or the token was refused

the seed's management flow:
  assetgen presets list
  export KIE_API_KEY=...
  assetgen providers add kie --preset kie-ai --base-url https://api.kie.ai --api-key-env KIE_API_KEY
  assetgen models add nano-banana --provider kie --type IMAGE --schema @nano-banana.json
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
    parser.add_argument("--token", help="API token (default: $ASSETGEN_TOKEN)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds each call may take (default 30)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        return sub.add_subparsers(dest="action", metavar="ACTION", required=True)

    def leaf(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, func: Command
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(func=func)
        return sub

    presets = group("presets", "provider presets shipped with AssetGen")
    leaf(presets, "list", "list the presets providers can be created from", _presets_list)

    providers = group("providers", "AI provider accounts")
    add = leaf(providers, "add", "add a provider from a preset (the seed's setup_kie_ai)", _providers_add)
    add.add_argument("name", help="unique provider name")
    add.add_argument("--preset", required=True, help="preset name, e.g. kie-ai (see: assetgen presets list)")
    add.add_argument("--base-url", help="the provider's API base URL (default: the preset's)")
    add.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key; read here and sent, never put on the command line",
    )
    leaf(providers, "list", "list providers (the API key is never shown)", _providers_list)

    models = group("models", "models offered by providers")
    listing = leaf(
        models, "list", "list models and their template variables (the seed's list_ai_models)", _models_list
    )
    listing.add_argument("--provider", help="only this provider's models")
    add = leaf(models, "add", "add a model with its request template", _models_add)
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

    boxes = group("boxes", "boxes that group the assets of one piece of work")
    create = leaf(boxes, "create", "create a box and print its id", _boxes_create)
    create.add_argument("name", help="human name of the box")
    listing = leaf(boxes, "list", "list boxes, newest first", _boxes_list)
    listing.add_argument("--limit", type=int, default=50, help="how many boxes (default 50)")

    upload = commands.add_parser(
        "upload",
        help="upload an image or video into a box",
        description="Upload an image or video into a box and print the new asset.",
        parents=[common],
    )
    upload.set_defaults(func=_upload)
    upload.add_argument("box", help="box id")
    upload.add_argument("file", help="path of the file")

    generate = commands.add_parser(
        "generate",
        help="start a generation (the seed's test_generation / test_video_generation)",
        description="Start a generation in a box. Without --wait it prints the PENDING asset and returns; "
        "with --wait it shows live progress and prints the file URL at the end (exit 1 if it fails).",
        parents=[common],
    )
    generate.set_defaults(func=_generate)
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

    watch = commands.add_parser(
        "watch",
        help="follow a box's assets live",
        description="Print the current state of a box's assets, then every change as it happens "
        "(Ctrl-C stops). Each line starts with the event sequence; --after SEQ resumes after it.",
        parents=[common],
    )
    watch.set_defaults(func=_watch)
    watch.add_argument("box", help="box id")
    watch.add_argument("--after", type=int, default=0, metavar="SEQ", help="resume after this event sequence")

    asset = group("asset", "one asset")
    show = leaf(asset, "show", "show an asset with a fresh file URL", _asset_show)
    show.add_argument("id", help="asset id")
    cancel = leaf(asset, "cancel", "cancel an in-flight generation", _asset_cancel)
    cancel.add_argument("id", help="asset id")
    retry = leaf(asset, "retry", "retry a FAILED or CANCELED generation", _asset_retry)
    retry.add_argument("id", help="asset id")
    return parser


async def run_cli(
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Runs one command and returns its exit code; what ``main`` does, callable from tests."""
    environ = os.environ if environ is None else environ
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        # argparse writes --help and usage errors to sys.stdout/stderr; keep them with ours.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    url = args.url or environ.get("ASSETGEN_URL") or DEFAULT_URL
    token = args.token or environ.get("ASSETGEN_TOKEN", "")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    try:
        async with grpc.aio.insecure_channel(url) as channel:
            cli = Cli(
                api=gateway_pb2_grpc.GatewayServiceStub(channel),
                metadata=metadata,
                timeout=args.timeout,
                as_json=getattr(args, "json", False),
                out=out,
                err=err,
                environ=environ,
            )
            return int(await args.func(cli, args))
    except UsageError as exc:
        print(f"assetgen: error: {exc}", file=err)
        return EXIT_USAGE
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        print(f"assetgen: {code.name.lower()}: {exc.details() or 'no details'}", file=err)
        if code in _UNREACHABLE_CODES:
            if code == grpc.StatusCode.UNAVAILABLE:
                print(f"assetgen: is the gateway running at {url}? (ASSETGEN_URL)", file=err)
            elif code == grpc.StatusCode.UNAUTHENTICATED:
                print("assetgen: check ASSETGEN_TOKEN", file=err)
            return EXIT_UNREACHABLE
        return EXIT_USAGE if code in _USAGE_CODES else EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    """The console script."""
    try:
        code = asyncio.run(run_cli(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
