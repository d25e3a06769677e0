"""Magic-byte sniffing decides the stored type, whatever a sender declares."""

from __future__ import annotations

import pytest

from assetgen_storage.media import OCTET_STREAM, resolve_media, sniff

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
GIF = b"GIF89a\x01\x00\x01\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
MOV = b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  "
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1"
_EBML_FIELDS = b"\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
WEBM = b"\x1a\x45\xdf\xa3\x9f" + _EBML_FIELDS + b"\x42\x82\x84webm"
MKV = b"\x1a\x45\xdf\xa3\xa3" + _EBML_FIELDS + b"\x42\x82\x88matroska"


@pytest.mark.parametrize(
    ("head", "content_type", "extension"),
    [
        (PNG, "image/png", "png"),
        (JPEG, "image/jpeg", "jpg"),
        (GIF, "image/gif", "gif"),
        (b"GIF87a\x01\x00", "image/gif", "gif"),
        (WEBP, "image/webp", "webp"),
        (MP4, "video/mp4", "mp4"),
        (MOV, "video/quicktime", "mov"),
        (AVIF, "image/avif", "avif"),
        (WEBM, "video/webm", "webm"),
        (MKV, "video/x-matroska", "mkv"),
    ],
)
def test_known_magic_is_recognised(head: bytes, content_type: str, extension: str) -> None:
    media = sniff(head + b"\x00" * 40)
    assert media is not None
    assert (media.content_type, media.extension, media.is_media) == (content_type, extension, True)


@pytest.mark.parametrize(
    "head",
    [b"", b"\x89PN", b"<svg xmlns='http://www.w3.org/2000/svg'", b"<html>", b"%PDF-1.7", b"RIFF\0\0\0\0WAVE"],
)
def test_unknown_bytes_are_not_recognised(head: bytes) -> None:
    assert sniff(head) is None


def test_bytes_win_over_the_declared_type() -> None:
    assert resolve_media(PNG, "video/mp4").content_type == "image/png"
    assert resolve_media(JPEG, "image/png; charset=binary").extension == "jpg"


def test_unrecognised_bytes_stay_octet_stream_whatever_is_declared() -> None:
    for declared in ("", "image/png", "text/html", "image/svg+xml"):
        media = resolve_media(b"<html><script>alert(1)</script>", declared)
        assert media == OCTET_STREAM
        assert (media.content_type, media.extension) == ("application/octet-stream", "bin")
        assert not media.is_media


def test_declared_quicktime_refines_an_iso_brand() -> None:
    assert resolve_media(MP4, "video/quicktime").content_type == "video/quicktime"
    assert resolve_media(MP4, "video/mp4").content_type == "video/mp4"
    assert resolve_media(PNG, "video/quicktime").content_type == "image/png"
