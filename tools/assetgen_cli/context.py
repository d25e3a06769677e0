"""What every command of the ``assetgen`` CLI shares: its exit codes, its usage error and ``Cli``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from google.protobuf.message import Message

from assetgen.v1 import common_pb2, gateway_pb2_grpc
from assetgen_runtime.codec import message_to_json

__all__ = [
    "DEFAULT_URL",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Cli",
    "UsageError",
    "model_type_name",
    "resolve_token",
    "source_type_name",
    "status_name",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEFAULT_URL = "127.0.0.1:50051"


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


def resolve_token(token: str | None, token_file: str | None, environ: Mapping[str, str]) -> str:
    """The API token: --token, --token-file, $ASSETGEN_TOKEN, then $ASSETGEN_TOKEN_FILE ('' if none).

    A file holds the token on its first line, so it never has to appear on a command line.
    """
    if token:
        return token
    path = token_file or ("" if environ.get("ASSETGEN_TOKEN") else environ.get("ASSETGEN_TOKEN_FILE", ""))
    if not path:
        return environ.get("ASSETGEN_TOKEN", "")
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
    first = lines[0].strip() if lines else ""
    if not first:
        raise UsageError(f"the token file {path} is empty")
    return first


def status_name(value: int) -> str:
    """An asset status without its prefix: ``COMPLETED``."""
    return common_pb2.AssetStatus.Name(value).removeprefix("ASSET_STATUS_")


def model_type_name(value: int) -> str:
    """A model type without its prefix: ``IMAGE``."""
    return common_pb2.ModelType.Name(value).removeprefix("MODEL_TYPE_")


def source_type_name(value: int) -> str:
    """An asset's source without its prefix: ``GENERATED``."""
    return common_pb2.SourceType.Name(value).removeprefix("SOURCE_TYPE_")
