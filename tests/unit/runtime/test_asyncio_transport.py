"""AsyncioHTTPTransport: httpx over asyncio's own streams — keep-alive, closes, timeouts, TLS, uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from assetgen_runtime.http import AsyncioHTTPTransport, AsyncioStream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The request line and body of one HTTP/1.1 request (Content-Length bodies only)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head.split(b"\r\n", 1)[0], body


def _response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def _keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with its request line and the size of its body."""
    port = writer.get_extra_info("peername")[1]
    try:
        while True:
            line, body = await _read_request(reader)
            writer.write(_response(b"%s %d %d" % (line.split()[1], len(body), port)))
            await writer.drain()
    except asyncio.IncompleteReadError:
        writer.close()


async def _one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one request, then closes the connection although HTTP/1.1 lets the client keep it."""
    await _read_request(reader)
    writer.write(_response(str(writer.get_extra_info("peername")[1]).encode()))
    await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request and never answers."""
    await _read_request(reader)
    await reader.read()  # until the client gives up and closes


@contextlib.asynccontextmanager
async def _serve(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[asyncio.Server]:
    """A loopback server running ``handler`` per connection; closes every connection on exit."""
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def _url(server: asyncio.Server, scheme: str = "http", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def keep_alive_server() -> AsyncIterator[asyncio.Server]:
    async with _serve(_keep_alive) as server:
        yield server


async def test_requests_go_over_asyncio_streams_and_reuse_the_connection(
    keep_alive_server: asyncio.Server,
) -> None:
    async with httpx.AsyncClient(transport=AsyncioHTTPTransport(), timeout=5) as client:
        first = await client.get(f"{_url(keep_alive_server)}/a")
        second = await client.get(f"{_url(keep_alive_server)}/b")
    assert isinstance(first.extensions["network_stream"], AsyncioStream)
    path_a, _, port_a = first.text.split()
    path_b, _, port_b = second.text.split()
    assert (path_a, path_b) == ("/a", "/b")
    assert port_a == port_b  # one kept-alive connection


async def test_a_large_body_is_sent_whole(keep_alive_server: asyncio.Server) -> None:
    body = bytes(range(256)) * 32 * 1024  # 8 MiB: more than the kernel takes at once, so drain() waits
    async with httpx.AsyncClient(transport=AsyncioHTTPTransport(), timeout=10) as client:
        response = await client.post(f"{_url(keep_alive_server)}/upload", content=body)
    assert response.text.split()[:2] == ["/upload", str(len(body))]


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async with _serve(_one_then_close) as server:
        async with httpx.AsyncClient(transport=AsyncioHTTPTransport(), timeout=5) as client:
            first = await client.get(f"{_url(server)}/")
            stream = first.extensions["network_stream"]
            deadline = time.monotonic() + 5
            while not stream.get_extra_info("is_readable"):  # the loop has yet to see the close
                assert time.monotonic() < deadline, "the server's close never reached the client"
                await asyncio.sleep(0.01)
            second = await client.get(f"{_url(server)}/")
    assert second.status_code == 200
    assert first.text != second.text  # a new connection, from another client port


async def test_no_answer_is_a_read_timeout() -> None:
    async with _serve(_silent) as server:
        async with httpx.AsyncClient(transport=AsyncioHTTPTransport(), timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"{_url(server)}/")


async def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        async with httpx.AsyncClient(transport=AsyncioHTTPTransport(), timeout=5) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")


async def test_socket_options_are_applied(keep_alive_server: asyncio.Server) -> None:
    transport = AsyncioHTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)])
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        response = await client.get(f"{_url(keep_alive_server)}/")
        sock = response.extensions["network_stream"].get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (and 127.0.0.1) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def _tls_round_trip(cert_file: Path, key_file: Path) -> tuple[httpx.Response, type[Exception] | None]:
    """One GET over TLS with the certificate trusted, one expecting a name the certificate lacks."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    async with _serve(_keep_alive, server_context) as server:
        client_context = ssl.create_default_context(cafile=str(cert_file))
        transport = AsyncioHTTPTransport(verify=client_context)
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            response = await client.get(f"{_url(server, 'https', 'localhost')}/secure")
            refused: type[Exception] | None = None
            try:
                # The same server under a name the certificate does not carry (via the SNI extension).
                await client.get(f"{_url(server, 'https')}/", extensions={"sni_hostname": "example.org"})
            except httpx.ConnectError as exc:
                refused = type(exc)
    return response, refused


async def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    response, refused = await _tls_round_trip(*_certificate(tmp_path))
    assert response.text.startswith("/secure ")
    assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
    assert refused is httpx.ConnectError


def uvloop_round_trips(directory: str) -> None:
    """Prints the plain and TLS answers and the refused connection's error, all on a uvloop loop."""
    cert_file, key_file = _certificate(Path(directory))

    async def both() -> tuple[str, str, type[Exception] | None]:
        async with _serve(_keep_alive) as server:
            async with httpx.AsyncClient(transport=AsyncioHTTPTransport(), timeout=5) as client:
                plain = (await client.get(f"{_url(server)}/plain")).text
        secure, refused = await _tls_round_trip(cert_file, key_file)
        return plain, secure.text, refused

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        plain, secure, refused = runner.run(both())
    print(json.dumps({"plain": plain, "secure": secure, "refused": refused and refused.__name__}))


def test_works_on_uvloop_plain_and_tls(tmp_path: Path) -> None:
    # In a process of its own: one CI run segfaulted right after this test, in uvloop's native teardown
    # of a loop with a refused TLS handshake (cf. MagicStack/uvloop#706); that must not end the session.
    script = f"import runpy, sys; runpy.run_path({__file__!r})['uvloop_round_trips'](sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["plain"].startswith("/plain ") and answers["secure"].startswith("/secure ")
    assert answers["refused"] == "ConnectError"
