"""`make run`'s demo provider: the fake Kie.ai jobs API whose tasks take a few seconds and make real media.

It is ``fake_providers.kie_jobs.FakeKieJobs`` (see there for the wire shapes and the ``/_demo/*``
routes) with a fixed delay from submission to success, a real PNG drawn from the prompt for image
models and a real H.264 MP4 for video models. A prompt containing ``[fail]`` ends in ``fail``.

Run it with ``python -m assetgen_dev.demo_provider --port 8099 --api-key demo --delay 3``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from assetgen_dev.fake_providers.base import serve
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, fixed
from assetgen_dev.fake_providers.media import MediaResults, make_png

__all__ = ["demo_provider", "main", "make_png", "start_demo_provider"]


def demo_provider(api_key: str, delay: float) -> FakeKieJobs:
    """The demo configuration: every task succeeds (or fails, asked to) ``delay`` seconds after submission."""
    return FakeKieJobs(api_key, timing=fixed(delay), results=MediaResults(), polls_before_done=0)


async def start_demo_provider(
    host: str = "127.0.0.1", port: int = 0, api_key: str = "demo-key", delay: float = 2.0
) -> tuple[web.AppRunner, str]:
    """Starts the demo provider (port 0 picks a free one); returns its runner and base URL.

    Stop it with ``await runner.cleanup()``.
    """
    return await serve(demo_provider(api_key, delay).make_app(), host, port)


def main(argv: list[str] | None = None) -> None:
    """``python -m assetgen_dev.demo_provider --host H --port N --api-key K --delay SECONDS``."""
    parser = argparse.ArgumentParser(
        description="A local Kie.ai-shaped provider that makes real PNG/MP4 files."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds from submission to success")
    args = parser.parse_args(argv)
    app = demo_provider(args.api_key, args.delay).make_app()
    web.run_app(app, host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
