"""The whole system for integration tests, started one way: the ``whole_stack`` fixture.

A whole stack (``assetgen_dev.stack.whole_stack``) is a nats-server of its own, the four services
started in this process through their ``run_server`` on free ports, on the session's SeaweedFS and on
SQLite unless a database URL is given, the fake providers a test wants served, and an HTTP client
authenticated to the gateway; all torn down in reverse order.
"""

from __future__ import annotations

import functools

import pytest

from assetgen_dev.embedded import S3Server
from assetgen_dev.stack import WholeStackFactory
from assetgen_dev.stack import whole_stack as start_whole_stack


@pytest.fixture(scope="session")
def whole_stack(s3_server: S3Server) -> WholeStackFactory:
    """Starts a whole stack: ``async with whole_stack(data_dir, fakes=[...], **options) as system:``.

    ``fakes`` are started first and stopped last; ``nats_port`` pins NATS's port (to restart it
    there); other options go to ``start_stack`` (``database_url``, ``max_object_bytes``,
    ``external_orchestrator_addr``, ...).
    """
    return functools.partial(start_whole_stack, s3=s3_server)
