"""What fake providers hand back as results: real pictures and clips, or sized filler bytes.

``make_png`` draws a small real PNG from a seed and ``demo_video`` is a real H.264 MP4, so `make run`
and the tests store media that any viewer opens. ``MediaResults`` and ``SizedResults`` decide what a
fake Kie task's result file is: a PNG or MP4 by model (the demo and the tests), or a PNG-headed block
of incompressible bytes of a requested size (the bench, where the result's size is what matters).
"""

from __future__ import annotations

import functools
import hashlib
import random
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

__all__ = [
    "MediaResults",
    "ResultFile",
    "Results",
    "SizedResults",
    "demo_video",
    "make_png",
    "result_block",
    "write_result",
]

_PNG_SIZE = 96
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BLOCK = 1024 * 1024
# Results up to this size are sent in one body; larger ones are streamed block by block, never held whole.
_WHOLE_LIMIT = 4 * _BLOCK


def make_png(seed: str, size: int = _PNG_SIZE) -> bytes:
    """A valid RGB PNG whose colours and pattern are derived from ``seed`` (zlib + struct only)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    start, end, stripe = digest[0:3], digest[3:6], digest[6:9]
    period = 4 + digest[9] % 12
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter type: none
        for x in range(size):
            if (x + y) // period % 3 == 0:
                rows.extend(stripe)
                continue
            t = (x + y) / (2 * size - 2)
            rows.extend(int(a + (b - a) * t) for a, b in zip(start, end, strict=True))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


@functools.cache
def demo_video() -> bytes:
    """A real H.264 MP4 (the demo provider's clip)."""
    return resources.files("assetgen_dev").joinpath("demo_video.mp4").read_bytes()


@functools.cache
def result_block() -> bytes:
    """One MiB that sized results are made of: a PNG head, then seeded random bytes (incompressible).

    The head is a PNG signature and IHDR chunk, enough for any type sniffer to call it an image.
    Seeded, so the bench's ingest reference can write the very same bytes to disk.
    """
    head = _PNG_SIGNATURE + bytes.fromhex("0000000d49484452000000600000006008020000004b6d2a4e")
    return head + random.Random(8).randbytes(_BLOCK - len(head))


# An ISO base media header (a 24-byte ftyp box, brand isom): what a type sniffer calls an MP4.
_MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def _first_block(video: bool, seed: str) -> bytes:
    """The first MiB of a sized result: the shared block, MP4-headed for a video, and, with a
    ``seed``, the seed's SHA-256 right after the head, so no two seeds' results are alike."""
    block = result_block()
    head = _MP4_HEAD if video else block[: len(_PNG_SIGNATURE) + 25]
    tag = hashlib.sha256(seed.encode()).digest() if seed else b""
    return head + tag + block[len(head) + len(tag) :]


def _sized_pieces(size: int, video: bool = False, seed: str = "") -> Iterator[bytes]:
    block, remaining = result_block(), size
    first = _first_block(video, seed) if video or seed else block
    while remaining > 0:
        source = first if remaining == size else block
        piece = source if remaining >= _BLOCK else source[:remaining]
        yield piece
        remaining -= len(piece)


def write_result(path: str, size: int) -> None:
    """Writes the bytes a ``size``-byte sized result consists of to ``path``."""
    with open(path, "wb") as file:
        for piece in _sized_pieces(size):
            file.write(piece)


@dataclass(frozen=True)
class ResultFile:
    """A finished task's result file: its type, URL extension, size, and its bytes in pieces."""

    content_type: str
    extension: str
    size: int
    pieces: Callable[[], Iterator[bytes]]

    @property
    def whole(self) -> bool:
        """Whether it is small enough to send (and hold) in one body."""
        return self.size <= _WHOLE_LIMIT

    def body(self) -> bytes:
        """All of its bytes at once."""
        return b"".join(self.pieces())


class Results(Protocol):
    """Decides a task's result file from what was submitted."""

    def file_for(self, model: str, payload: Mapping[str, Any], prompt: str) -> ResultFile:
        """The result file of a task for ``model`` with ``input`` ``payload``."""
        ...


def _once(body: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter((body,))


class MediaResults:
    """Real media: the demo MP4 for video models, else a PNG drawn from the prompt.

    A model is a video model when its name says "video", or when it is not named an image model
    and the input carries ``image_urls`` (image-to-video).
    """

    def file_for(self, model: str, payload: Mapping[str, Any], prompt: str) -> ResultFile:
        lowered = model.lower()
        if "video" in lowered or ("image" not in lowered and bool(payload.get("image_urls"))):
            video = demo_video()
            return ResultFile("video/mp4", "mp4", len(video), _once(video))
        picture = _png_of(prompt)
        return ResultFile("image/png", "png", len(picture), _once(picture))


@functools.lru_cache(maxsize=256)
def _png_of(prompt: str) -> bytes:
    return make_png(prompt)


class SizedResults:
    """PNG-headed incompressible bytes: ``input.size`` of them, else ``default_bytes``.

    ``input.media`` ``"video"`` makes the result MP4-headed (``video/mp4``); ``input.seed`` makes its
    bytes its own (the seed's SHA-256 follows the head), so a result stored under the wrong asset
    shows in a checksum. Neither given: every result of a size is the same bytes, built once.
    """

    def __init__(self, default_bytes: int) -> None:
        self.default_bytes = default_bytes
        self._whole: dict[int, bytes] = {}

    def file_for(self, model: str, payload: Mapping[str, Any], prompt: str) -> ResultFile:
        size = int(payload.get("size") or self.default_bytes)
        video, seed = payload.get("media") == "video", str(payload.get("seed") or "")
        if video or seed:
            # Built piece by piece at each download, never held: thousands of tasks may wait for theirs.
            pieces = functools.partial(_sized_pieces, size, video, seed)
            if video:
                return ResultFile("video/mp4", "mp4", size, pieces)
            return ResultFile("image/png", "png", size, pieces)
        if size > _WHOLE_LIMIT:
            return ResultFile("image/png", "png", size, functools.partial(_sized_pieces, size))
        body = self._whole.get(size)
        if body is None:  # one body per size, shared by every task of that size
            body = self._whole[size] = b"".join(_sized_pieces(size))
        return ResultFile("image/png", "png", size, _once(body))
