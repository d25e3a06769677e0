"""The benchmarks' provider: the fake Kie.ai jobs API with per-task timing and sized results.

It is ``assetgen_dev.fake_providers.kie_jobs.FakeKieJobs`` (see there for the wire shapes, the
statistics and the ``/_demo/*`` control routes), configured so each task decides through its
``input`` (the bench model's template fills these from ``config``):

* ``finish_after`` (seconds after submission; 0 or absent: finished at once), or ``hold: true``: the
  task runs until ``POST /_demo/release`` gives it a finish time;
* ``size``: result bytes (default ``--result-bytes``), PNG-headed so storage takes it as an image;
  large results are streamed, never held whole;
* ``media: video`` (MP4-headed) and ``seed`` (bytes of its own), for the realistic work.

With ``--digest-downloads`` every download's SHA-256 is recorded (``/_demo/downloads``), so the bench
can check each stored object against the very bytes the provider sent.

With ``--callback-secret``, a finished task whose submission named a ``callBackUrl`` is called back
at its finish time, signed as Kie signs (the callbacks benchmark). ``--extra-key`` accepts another
account's key and ``--per-key-limit`` caps the tasks each key runs at once (over it: HTTP 429), as
providers limit accounts (the queueing benchmark).

Run: ``python -m bench.provider --port N --api-key K [--result-bytes 102400] [--callback-secret S]
[--extra-key K2 ...] [--per-key-limit 5] [--digest-downloads]``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, from_input
from assetgen_dev.fake_providers.media import SizedResults

__all__ = ["bench_provider", "main"]

# The listen backlog: a benchmark opens connections faster than a default backlog takes them.
_BACKLOG = 4096


def bench_provider(
    api_key: str, result_bytes: int, callback_secret: str = "", *, digest_downloads: bool = False
) -> FakeKieJobs:
    """The bench configuration: timing from each task's input, ``result_bytes`` results by default,
    callbacks signed with ``callback_secret`` when given, downloads' SHA-256 with ``digest_downloads``."""
    return FakeKieJobs(
        api_key,
        timing=from_input,
        results=SizedResults(result_bytes),
        polls_before_done=0,
        callback_secret=callback_secret,
        digest_downloads=digest_downloads,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.provider --port N --api-key K [--result-bytes B] [--callback-secret S]``."""
    parser = argparse.ArgumentParser(description="AssetGen benchmarks' fake Kie-shaped provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--result-bytes", type=int, default=100 * 1024)
    parser.add_argument("--callback-secret", default="", help="call finished tasks back, signed with this")
    parser.add_argument("--extra-key", action="append", default=[], help="another account's key it accepts")
    parser.add_argument("--per-key-limit", type=int, default=0, help="most tasks one key runs (0: no limit)")
    parser.add_argument("--digest-downloads", action="store_true", help="record each download's SHA-256")
    args = parser.parse_args(argv)
    provider = bench_provider(
        args.api_key, args.result_bytes, args.callback_secret, digest_downloads=args.digest_downloads
    )
    for key in args.extra_key:
        provider.add_key(key)
    provider.per_key_limit = args.per_key_limit
    web.run_app(
        provider.make_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=_BACKLOG,
    )


if __name__ == "__main__":
    main()
