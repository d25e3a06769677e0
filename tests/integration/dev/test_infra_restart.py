"""`make run`'s NATS and S3 come back where they were, with their data, after they die."""

from __future__ import annotations

import io
import signal
import uuid
from pathlib import Path

import nats
from minio import Minio

from assetgen_dev.embedded import start_nats, start_seaweedfs
from assetgen_dev.testing import eventually


async def test_a_killed_nats_restarts_on_its_url_with_its_streams(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "nats")
    try:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        js = nc.jetstream(timeout=5)
        subject = f"restart.{uuid.uuid4().hex}"
        await js.add_stream(name="RESTART", subjects=[subject])
        await js.publish(subject, b"before")
        url, old_pid = server.url, server.process.pid

        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        server.restart()

        assert server.url == url and server.process.pid != old_pid

        # The client reconnects by itself; the stream and its message were kept on disk.
        async def last_message() -> bytes:
            try:
                return bytes((await js.get_last_msg("RESTART", subject)).data or b"")
            except Exception:
                return b""

        assert await eventually(last_message, bool, what="the stream back after the restart") == b"before"
        await js.publish(subject, b"after")
        assert (await js.stream_info("RESTART")).state.messages == 2
        await nc.close()
    finally:
        server.stop()


def test_a_killed_s3_server_restarts_on_its_url_with_its_objects(tmp_path: Path) -> None:
    server = start_seaweedfs(tmp_path / "s3", access_key="restart", secret_key="restart-" + uuid.uuid4().hex)
    try:

        def client() -> Minio:
            return Minio(
                server.url.removeprefix("http://"),
                access_key=server.access_key,
                secret_key=server.secret_key,
                secure=False,
            )

        client().make_bucket("restart")
        client().put_object("restart", "kept", io.BytesIO(b"kept bytes"), 10)
        url = server.url

        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        server.restart()

        assert server.url == url
        response = client().get_object("restart", "kept")
        try:
            assert response.read() == b"kept bytes"
        finally:
            response.close()
            response.release_conn()
    finally:
        server.stop()
