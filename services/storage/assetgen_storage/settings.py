"""The storage service's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from assetgen_runtime.settings import ServiceSettings, env

__all__ = ["StorageSettings"]


@dataclass(frozen=True, kw_only=True)
class StorageSettings(ServiceSettings):
    """Everything the storage service needs to know about its environment (besides ``ServiceSettings``)."""

    grpc_port: int = env("ASSETGEN_GRPC_PORT", "Port of the storage service's gRPC API.", 50054)
    grpc_host: str = env(
        "ASSETGEN_GRPC_HOST", "Address the gRPC API binds (127.0.0.1: this machine only).", "0.0.0.0"
    )
    service_token: str = env(
        "ASSETGEN_SERVICE_TOKEN",
        "Service credential: every call but health and reflection must carry it, and calls to other "
        "services carry it (empty: not required).",
        "",
    )
    s3_endpoint: str = env("ASSETGEN_S3_ENDPOINT", "S3 endpoint URL, e.g. http://127.0.0.1:8333.")
    s3_access_key: str = env("ASSETGEN_S3_ACCESS_KEY", "S3 access key.")
    s3_secret_key: str = env("ASSETGEN_S3_SECRET_KEY", "S3 secret key.")
    s3_bucket: str = env(
        "ASSETGEN_S3_BUCKET", "Bucket assets are stored in (created if missing).", "assetgen"
    )
    s3_region: str = env("ASSETGEN_S3_REGION", "Region requests are signed for.", "us-east-1")
    s3_public_endpoint: str = env(
        "ASSETGEN_S3_PUBLIC_ENDPOINT",
        "Endpoint URL presigned read URLs are made for (default: ASSETGEN_S3_ENDPOINT).",
        "",
    )
    s3_public_base_url: str = env(
        "ASSETGEN_S3_PUBLIC_BASE_URL",
        "Public base URL of the bucket (CDN); when set, URLs are not signed.",
        "",
    )
    presign_expiry_seconds: int = env(
        "ASSETGEN_PRESIGN_EXPIRY_SECONDS", "Lifetime of presigned read URLs.", 7 * 24 * 3600
    )
    max_object_bytes: int = env(
        "ASSETGEN_MAX_OBJECT_BYTES", "Largest object accepted, in bytes.", 2 * 1024**3
    )
    part_size_bytes: int = env(
        "ASSETGEN_S3_PART_SIZE_BYTES",
        "Multipart part size (>= 5 MiB); a file up to this size is stored in one request.",
        16 * 1024**2,
    )
    s3_parts_in_flight: int = env(
        "ASSETGEN_S3_PARTS_IN_FLIGHT",
        "Parts of one multipart upload sent at once; an upload holds about this many plus one in memory.",
        2,
    )
    allowed_fetch_networks: tuple[str, ...] = env(
        "ASSETGEN_ALLOWED_FETCH_NETWORKS",
        "Comma-separated CIDRs ingest may reach besides public addresses.",
        (),
    )
    fetch_timeout_seconds: float = env(
        "ASSETGEN_FETCH_TIMEOUT_SECONDS", "Connect/read timeout of one ingest download.", 30.0
    )
    max_redirects: int = env("ASSETGEN_MAX_REDIRECTS", "Redirects an ingest follows at most.", 5)
    s3_timeout_seconds: float = env(
        "ASSETGEN_S3_TIMEOUT_SECONDS", "Read timeout of one S3 request (connecting: at most 5 s).", 60.0
    )
    s3_attempts: int = env(
        "ASSETGEN_S3_ATTEMPTS", "Tries of one S3 request (backoff 0.5 s doubling, at most 4 s).", 6
    )
    s3_startup_timeout_seconds: float = env(
        "ASSETGEN_S3_STARTUP_TIMEOUT_SECONDS", "How long start-up waits for S3 (the bucket check).", 60.0
    )
