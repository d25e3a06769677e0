"""The ``assetgen`` command: operators' management of an AssetGen over the gateway's gRPC API.

It adds provider accounts from presets, lists and adds models, creates boxes, uploads files, starts
generations (``--wait`` follows one to its file), follows a box live, and manages projects and API
keys; ``parser`` lists every command and ``commands`` / ``access_commands`` hold what each one does.
The token comes from ``--token-file``, ``$ASSETGEN_TOKEN`` or ``$ASSETGEN_TOKEN_FILE``, so it never
has to be on the command line. Exit codes scripts can trust:

- 0: done (for ``generate --wait``: the asset COMPLETED);
- 1: the asset FAILED or was CANCELED, or the server failed the call;
- 2: usage error — bad arguments, or a request the API refused as invalid (unknown id, bad schema…);
- 3: the gateway cannot be reached, or refused the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

import grpc

from assetgen.v1 import gateway_pb2_grpc
from assetgen_cli.context import (
    DEFAULT_URL,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Cli,
    UsageError,
    resolve_token,
)
from assetgen_cli.parser import build_parser

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
    "run_cli",
]

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
    try:
        token = resolve_token(args.token, args.token_file, environ)
        metadata = [("authorization", f"Bearer {token}")] if token else []
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
                print("assetgen: check ASSETGEN_TOKEN (or ASSETGEN_TOKEN_FILE)", file=err)
            elif code == grpc.StatusCode.PERMISSION_DENIED:
                print("assetgen: the token lacks the scope this needs", file=err)
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
