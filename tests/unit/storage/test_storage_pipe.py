"""The loop-to-thread byte pipe: bounded, ordered, and failing the reader when the writer fails."""

from __future__ import annotations

import asyncio

import pytest

from assetgen_storage.pipe import ChunkPipe, PipeClosed


async def test_reader_gets_all_bytes_in_order_in_requested_sizes() -> None:
    pipe = ChunkPipe(limit_bytes=10)
    data = bytes(range(256)) * 4

    def read_all() -> list[bytes]:
        parts = []
        while part := pipe.read(100):
            parts.append(part)
        pipe.reader_done()
        return parts

    reader = asyncio.ensure_future(asyncio.to_thread(read_all))
    for start in range(0, len(data), 7):
        await pipe.write(data[start : start + 7])
    pipe.close()
    parts = await reader
    assert b"".join(parts) == data
    assert [len(part) for part in parts[:-1]] == [100] * (len(parts) - 1)


async def test_writer_waits_while_the_buffer_is_full() -> None:
    pipe = ChunkPipe(limit_bytes=4)
    await pipe.write(b"abcd")
    blocked = asyncio.ensure_future(pipe.write(b"efgh"))
    await asyncio.sleep(0)  # one loop turn: the write must not have gone through
    assert not blocked.done()
    assert await asyncio.to_thread(pipe.read, 4) == b"abcd"
    await asyncio.wait_for(blocked, timeout=5)
    pipe.close()
    assert await asyncio.to_thread(pipe.read, 100) == b"efgh"


async def test_failure_reaches_a_waiting_reader() -> None:
    pipe = ChunkPipe(limit_bytes=100)
    await pipe.write(b"partial")
    reader = asyncio.ensure_future(asyncio.to_thread(pipe.read, 1000))
    pipe.fail(ValueError("cut off"))
    with pytest.raises(ValueError, match="cut off"):
        await asyncio.wait_for(reader, timeout=5)


async def test_writer_learns_the_reader_is_gone() -> None:
    pipe = ChunkPipe(limit_bytes=4)
    await pipe.write(b"abcd")
    blocked = asyncio.ensure_future(pipe.write(b"more"))
    await asyncio.to_thread(pipe.reader_done)
    with pytest.raises(PipeClosed):
        await asyncio.wait_for(blocked, timeout=5)
