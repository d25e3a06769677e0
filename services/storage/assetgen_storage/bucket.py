"""The one wrapper around the blocking MinIO client: calls run in threads, errors become domain errors.

Only S3 features that SeaweedFS, MinIO and AWS S3 share are used: multipart PUT, HEAD, DELETE,
self-copy with replaced metadata, bucket HEAD/PUT and presigned GET.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.error import MinioException, S3Error, ServerError

from assetgen_runtime.errors import AssetGenError, NotFound, Unavailable
from assetgen_storage.pipe import ChunkPipe
from assetgen_storage.settings import StorageSettings

__all__ = ["CACHE_CONTROL", "Bucket", "ObjectInfo", "parse_endpoint"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_CONTROL = "public, max-age=31536000, immutable"
"""Keys are never reused, so a stored object never changes: caches may keep it for a year."""

SHA256_METADATA = "sha256"
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
_BUCKET_TAKEN_CODES = frozenset({"BucketAlreadyOwnedByYou"})
_S3_FAILURES = (urllib3.exceptions.HTTPError, ServerError, OSError)


@dataclass(frozen=True)
class ObjectInfo:
    """What S3 knows about a stored object."""

    key: str
    content_type: str
    size_bytes: int
    sha256: str


def parse_endpoint(url: str, *, setting: str = "ASSETGEN_S3_ENDPOINT") -> tuple[str, bool]:
    """(host:port, secure) from an endpoint URL such as http://127.0.0.1:8333."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"{setting} must be an http(s) URL without a path, got {url!r}")
    return parts.netloc, parts.scheme == "https"


def _http_client(settings: StorageSettings) -> urllib3.PoolManager:
    # Bounded tries with exponential backoff (0.5 s, 1 s, 2 s, 4 s) for connection failures and
    # 5xx answers; uploads send parts as bytes, so a retried part is re-sent whole.
    retries = urllib3.Retry(
        total=max(settings.s3_attempts - 1, 0),
        backoff_factor=0.25,
        backoff_max=4.0,
        status_forcelist=(500, 502, 503, 504),
    )
    timeout = urllib3.Timeout(connect=min(5.0, settings.s3_timeout_seconds), read=settings.s3_timeout_seconds)
    return urllib3.PoolManager(timeout=timeout, retries=retries, maxsize=16)


class Bucket:
    """The service's bucket: streaming puts, metadata, stat, delete and read URLs."""

    def __init__(self, settings: StorageSettings) -> None:
        host, secure = parse_endpoint(settings.s3_endpoint)
        self.name = settings.s3_bucket
        self.endpoint = settings.s3_endpoint
        self._settings = settings
        self._client = Minio(
            host,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=secure,
            region=settings.s3_region,
            http_client=_http_client(settings),
        )
        public_host, public_secure = parse_endpoint(
            settings.s3_public_endpoint or settings.s3_endpoint, setting="ASSETGEN_S3_PUBLIC_ENDPOINT"
        )
        # Signing only: with the region given, presigning never asks the network where the bucket is.
        self._signer = Minio(
            public_host,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=public_secure,
            region=settings.s3_region,
        )

    async def _run(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise NotFound(f"{what}: no such object") from None
            raise AssetGenError(f"S3 refused {what}: {exc.code}: {exc.message}") from exc
        except _S3_FAILURES as exc:
            raise Unavailable(
                f"S3 at {self.endpoint} is unavailable ({what} failed after "
                f"{self._settings.s3_attempts} tries): {exc}"
            ) from exc
        except MinioException as exc:
            raise Unavailable(f"S3 at {self.endpoint} answered {what} unexpectedly: {exc}") from exc

    async def ensure(self, timeout: float) -> None:
        """Creates the bucket unless it exists, retrying until S3 answers or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                await self._run(f"creating bucket {self.name}", self._ensure_blocking)
                return
            except Unavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"S3 not ready within {timeout:g} s: {exc.message}") from exc
                logger.warning("S3 not ready yet", extra={"error": exc.message, "bucket": self.name})
            # Waiting for a dependency to come up, with backoff: nothing to poll but S3 itself.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _ensure_blocking(self) -> None:
        if self._client.bucket_exists(self.name):
            return
        try:
            self._client.make_bucket(self.name)
            logger.info("bucket created", extra={"bucket": self.name})
        except S3Error as exc:
            if exc.code not in _BUCKET_TAKEN_CODES:
                raise

    async def put_stream(self, key: str, pipe: ChunkPipe, *, content_type: str) -> None:
        """Streams ``pipe`` into ``key`` (multipart past one part); a failing read aborts the upload."""

        def put() -> None:
            try:
                # One part in flight at a time: MinIO's parallel pool multiplies memory by its width
                # and leaves its worker threads blocked forever when an upload fails midway.
                self._client.put_object(
                    self.name,
                    key,
                    pipe,  # type: ignore[arg-type]  # a file-like object with read()
                    length=-1,
                    content_type=content_type,
                    metadata={"Cache-Control": CACHE_CONTROL},
                    part_size=self._settings.part_size_bytes,
                    num_parallel_uploads=1,
                )
            finally:
                pipe.reader_done()

        await self._run(f"storing {key}", put)

    async def seal(self, key: str, *, content_type: str, sha256: str) -> None:
        """Records ``sha256`` in the object's metadata, known only once all bytes went by (a self-copy)."""
        metadata: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": content_type,
            "Cache-Control": CACHE_CONTROL,
            SHA256_METADATA: sha256,
        }

        def copy() -> None:
            self._client.copy_object(
                self.name, key, CopySource(self.name, key), metadata=metadata, metadata_directive=REPLACE
            )

        await self._run(f"recording the checksum of {key}", copy)

    async def stat(self, key: str) -> ObjectInfo:
        """Size, type and checksum of ``key``; NotFound when it does not exist."""
        info = await self._run(f"describing {key}", lambda: self._client.stat_object(self.name, key))
        metadata = info.metadata or {}
        return ObjectInfo(
            key=key,
            content_type=info.content_type or "application/octet-stream",
            size_bytes=int(info.size or 0),
            sha256=str(metadata.get(f"x-amz-meta-{SHA256_METADATA}", "")),
        )

    async def delete(self, key: str) -> None:
        """Removes ``key``; removing a missing object succeeds (S3 semantics)."""
        await self._run(f"deleting {key}", lambda: self._client.remove_object(self.name, key))

    async def presigned_urls(self, keys: Sequence[str]) -> dict[str, str]:
        """A fresh presigned GET URL per key, for the public endpoint, valid for the configured expiry."""
        expires = timedelta(seconds=self._settings.presign_expiry_seconds)

        def sign() -> dict[str, str]:
            return {key: self._signer.presigned_get_object(self.name, key, expires=expires) for key in keys}

        return await self._run("presigning read URLs", sign)
