"""What a file really is, decided from its first bytes (magic numbers), not from what a sender claims."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OCTET_STREAM", "SNIFF_BYTES", "MediaType", "resolve_media", "sniff"]

SNIFF_BYTES = 64
"""How many leading bytes :func:`sniff` needs at most."""


@dataclass(frozen=True)
class MediaType:
    """A media type and the extension stored objects of that type get."""

    content_type: str
    extension: str

    @property
    def is_media(self) -> bool:
        """True for images and videos, the only things uploads may carry."""
        return self.content_type.startswith(("image/", "video/"))


OCTET_STREAM = MediaType("application/octet-stream", "bin")
PNG = MediaType("image/png", "png")
JPEG = MediaType("image/jpeg", "jpg")
GIF = MediaType("image/gif", "gif")
WEBP = MediaType("image/webp", "webp")
AVIF = MediaType("image/avif", "avif")
MP4 = MediaType("video/mp4", "mp4")
QUICKTIME = MediaType("video/quicktime", "mov")
WEBM = MediaType("video/webm", "webm")
MATROSKA = MediaType("video/x-matroska", "mkv")

# ISO base media (ftyp) brands that are still images rather than videos.
_IMAGE_BRANDS = {b"avif": AVIF, b"avis": AVIF}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID = b"\x42\x82"


def _sniff_ftyp(head: bytes) -> MediaType | None:
    # ISO base media: a box of 4-byte size then "ftyp", then the major brand.
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand == b"qt  ":
        return QUICKTIME
    return _IMAGE_BRANDS.get(brand, MP4)


def _sniff_ebml(head: bytes) -> MediaType | None:
    if not head.startswith(_EBML_MAGIC):
        return None
    # The DocType element tells WebM from its parent format Matroska; a header too short to say is
    # taken as WebM, the common case.
    position = head.find(_EBML_DOCTYPE_ID)
    if position != -1 and b"matroska" in head[position : position + 16]:
        return MATROSKA
    return WEBM


def sniff(head: bytes) -> MediaType | None:
    """The media type that ``head`` (a file's first bytes, :data:`SNIFF_BYTES` suffice) shows, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    return _sniff_ftyp(head) or _sniff_ebml(head)


def _normalise(declared: str) -> str:
    return declared.split(";", 1)[0].strip().lower()


def resolve_media(head: bytes, declared: str = "") -> MediaType:
    """The type a file is stored as: what its bytes show, whatever ``declared`` says.

    The declared type only breaks a tie the bytes cannot: a file whose bytes are not recognised is kept
    as application/octet-stream, because serving an unverified declared type (text/html,
    image/svg+xml) from the bucket would let a file run script in a reader's browser.
    """
    sniffed = sniff(head)
    if sniffed is None:
        return OCTET_STREAM
    if sniffed is MP4 and _normalise(declared) == QUICKTIME.content_type:
        # Many QuickTime files carry an ISO brand; the sender knows which player it meant.
        return QUICKTIME
    return sniffed
