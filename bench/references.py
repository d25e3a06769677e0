"""Reference measurements, each in a fresh process of its own so its CPU time is only its own work.

* ``httpx-get``: CPU per bare GET of a provider status URL (the floor for one poll);
* ``pipeline``: the I/O one generation needs, done bare — createTask, recordInfo, download the result,
  ``put_object`` into S3 — at the same concurrency, for generations/s and CPU per generation;
* ``upload``: a direct MinIO-client upload of a file from local disk (MB/s and peak memory).

The HTTP references run on the stack the services run on, so the floor is this stack's own: uvloop
(``--loop``; ``asyncio`` for comparison) and the provider-adapter's client — ``DirectClient`` over
the sharded transport on asyncio streams, requests handed straight to the transport, no cookies.
Each prints one JSON object. The bench runs them as ``python -m bench.references <kind> ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from minio import Minio

from assetgen_runtime.eventloop import EVENT_LOOPS
from assetgen_runtime.eventloop import run as run_on_loop
from assetgen_runtime.http import DirectClient, ShardedTransport, cookieless_jar

__all__ = ["main", "run_reference"]


# The provider-adapter's pools (its main.py): eight shards of up to 64 connections.
_POOLS = 8
_POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)


def _services_client(headers: dict[str, str], timeout: float, base_url: str = "") -> DirectClient:
    """A client built as the provider-adapter builds its own (without the network guard)."""
    return DirectClient(
        base_url=base_url,
        headers=headers,
        cookies=cookieless_jar(),
        timeout=timeout,
        follow_redirects=False,
        transport=ShardedTransport(_POOLS, _POOL_LIMITS),
    )


async def _get(client: DirectClient, url: str, params: dict[str, str] | None = None) -> httpx.Response:
    """A GET as the adapter sends one: built by the client, handed to the transport, body read."""
    response = await client.send_direct(client.build_request("GET", url, params=params))
    await response.aread()
    response.raise_for_status()
    return response


async def _httpx_get(url: str, key: str, n: int, concurrency: int, client_kind: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    if client_kind == "plain":
        # The first edition's reference: a plain httpx client, each GET through all of its layers.
        async with httpx.AsyncClient(headers=headers, timeout=30) as plain:
            return await _time_gets(lambda: plain.get(url), n, concurrency, "plain httpx.AsyncClient.get")
    async with _services_client(headers, 30) as client:
        for _ in range(_POOLS):
            await _get(client, url)  # connection set-up (one per pool) is not what a poll costs
        return await _time_gets(
            lambda: _get(client, url),
            n,
            concurrency,
            "DirectClient.send_direct over ShardedTransport (the provider-adapter's client)",
        )


async def _time_gets(
    get: Callable[[], Awaitable[httpx.Response]], n: int, concurrency: int, stack: str
) -> dict[str, Any]:
    (await get()).raise_for_status()  # connection set-up is not what a poll costs
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            response = await get()
            response.raise_for_status()
            response.json()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "requests": n,
        "cpu_ms_per_get": 1000 * cpu / n,
        "gets_per_s": n / wall,
        "concurrency": concurrency,
        "stack": stack,
    }


def _s3(endpoint: str, access: str, secret: str) -> Minio:
    host = endpoint.removeprefix("http://")
    return Minio(host, access_key=access, secret_key=secret, secure=False, region="us-east-1")


async def _pipeline(args: argparse.Namespace) -> dict[str, Any]:
    s3 = _s3(args.s3, args.access, args.secret)
    bucket = args.bucket
    await asyncio.to_thread(s3.make_bucket, bucket)
    headers = {"Authorization": f"Bearer {args.key}"}
    # The realistic work's task inputs (sizes, kinds, seeds), taken in turn; else the default result.
    inputs = json.loads(Path(args.inputs).read_text()) if args.inputs else [{}]
    async with _services_client(headers, 60, args.url) as client:

        async def one(index: int) -> None:
            body = {"model": "bench/image", "input": {"prompt": "reference", **inputs[index % len(inputs)]}}
            created = await client.send_direct(
                client.build_request("POST", "/api/v1/jobs/createTask", json=body)
            )
            await created.aread()
            task = created.json()["data"]["taskId"]
            info = (await _get(client, "/api/v1/jobs/recordInfo", {"taskId": task})).json()["data"]
            url = json.loads(info["resultJson"])["resultUrls"][0]
            data = (await _get(client, url)).content
            await asyncio.to_thread(
                s3.put_object,
                bucket,
                f"ref/{index}.png",
                io.BytesIO(data),
                len(data),
                content_type="image/png",
            )

        queue = iter(range(args.n))

        async def worker() -> None:
            for index in queue:
                await one(index)

        await one(-1)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "generations": args.n,
        "generations_per_s": args.n / wall,
        "cpu_ms_per_generation": 1000 * cpu / args.n,
        "concurrency": args.concurrency,
    }


def _upload(args: argparse.Namespace) -> dict[str, Any]:
    s3 = _s3(args.s3, args.access, args.secret)
    s3.make_bucket(args.bucket)
    size = Path(args.file).stat().st_size
    cpu, wall = time.process_time(), time.perf_counter()
    s3.fput_object(args.bucket, "reference.png", args.file, content_type="image/png")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "bytes": size,
        "seconds": wall,
        "mb_per_s": size / wall / 1e6,
        "cpu_seconds": cpu,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.references httpx-get|pipeline|upload ...``; prints one JSON object."""
    parser = argparse.ArgumentParser(description="reference measurements for `make bench`")
    parser.add_argument("kind", choices=["httpx-get", "pipeline", "upload"])
    parser.add_argument("--url", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--s3", default="")
    parser.add_argument("--access", default="")
    parser.add_argument("--secret", default="")
    parser.add_argument("--bucket", default="")
    parser.add_argument("--file", default="")
    parser.add_argument("--inputs", default="", help="pipeline: a JSON list of task inputs, taken in turn")
    parser.add_argument(
        "--client",
        choices=["services", "plain"],
        default="services",
        help="httpx-get: the adapter's client (default) or a plain httpx client (the first edition's)",
    )
    parser.add_argument(
        "--loop", choices=EVENT_LOOPS, default="uvloop", help="event loop (the services': uvloop)"
    )
    args = parser.parse_args(argv)
    if args.kind == "httpx-get":
        result = run_on_loop(_httpx_get(args.url, args.key, args.n, args.concurrency, args.client), args.loop)
    elif args.kind == "pipeline":
        result = run_on_loop(_pipeline(args), args.loop)
    else:
        result = _upload(args)
    if args.kind != "upload":
        result["event_loop"] = args.loop
    json.dump(result, sys.stdout)


async def run_reference(*args: str, timeout: float = 900) -> dict[str, Any]:
    """Runs one reference in its own process and returns what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.references",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"reference {args[0]} failed: {err.decode(errors='replace')[-2000:]}")
    return dict(json.loads(out))


if __name__ == "__main__":
    main()
