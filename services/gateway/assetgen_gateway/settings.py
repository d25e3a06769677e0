"""The gateway's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from assetgen_runtime.settings import ServiceSettings, env

__all__ = ["GatewaySettings"]


@dataclass(frozen=True, kw_only=True)
class GatewaySettings(ServiceSettings):
    """Everything the gateway needs to know about its environment (besides ``ServiceSettings``)."""

    http_port: int = env("ASSETGEN_HTTP_PORT", "Port of the HTTP/JSON API.", 8080)
    grpc_port: int = env("ASSETGEN_GRPC_PORT", "Port of the public gRPC API.", 50051)
    service_token: str = env(
        "ASSETGEN_SERVICE_TOKEN",
        "Service credential the gateway's calls to internal services carry (empty: they require none).",
        "",
    )
    orchestrator_addr: str = env(
        "ASSETGEN_ORCHESTRATOR_ADDR", "host:port of the orchestrator.", "127.0.0.1:50052"
    )
    provider_adapter_addr: str = env(
        "ASSETGEN_PROVIDER_ADAPTER_ADDR", "host:port of the provider-adapter.", "127.0.0.1:50053"
    )
    storage_addr: str = env("ASSETGEN_STORAGE_ADDR", "host:port of the storage service.", "127.0.0.1:50054")
    nats_url: str = env(
        "ASSETGEN_NATS_URL",
        "NATS server URL; live status reads the orchestrator's events there.",
        "nats://127.0.0.1:4222",
    )
    watch_heartbeat_seconds: float = env(
        "ASSETGEN_WATCH_HEARTBEAT_SECONDS", "Idle time after which event streams send a keep-alive.", 15.0
    )
    api_tokens: tuple[str, ...] = env("ASSETGEN_API_TOKENS", "Comma-separated bearer tokens accepted.", ())
    api_token_file: str = env("ASSETGEN_API_TOKEN_FILE", "File with one accepted token per line.", "")
    key_cache_seconds: float = env(
        "ASSETGEN_KEY_CACHE_SECONDS",
        "How long an API key's check is reused; a key revoked on another gateway replica is refused "
        "within this time (on this one at once).",
        5.0,
    )
    watch_token_secret: str = env(
        "ASSETGEN_WATCH_TOKEN_SECRET",
        "Secret that signs watch tokens; every replica needs the same one (empty: a random one per process).",
        "",
    )
    watch_token_ttl_seconds: float = env(
        "ASSETGEN_WATCH_TOKEN_TTL_SECONDS", "How long a watch token is accepted (at most 900).", 900.0
    )
    max_watchers_per_key: int = env(
        "ASSETGEN_MAX_WATCHERS_PER_KEY", "Open watches (streams, WebSockets) one key may hold at once.", 32
    )
    max_uploads_per_key: int = env(
        "ASSETGEN_MAX_UPLOADS_PER_KEY", "Uploads one key may have in flight at once.", 4
    )
    max_object_bytes: int = env(
        "ASSETGEN_MAX_OBJECT_BYTES", "Largest upload accepted, in bytes.", 2 * 1024**3
    )
    max_json_body_bytes: int = env(
        "ASSETGEN_MAX_JSON_BODY_BYTES", "Largest JSON request body, in bytes.", 1024**2
    )
    cors_origins: tuple[str, ...] = env(
        "ASSETGEN_CORS_ORIGINS", "Comma-separated origins allowed by CORS.", ()
    )
    console_media_origins: tuple[str, ...] = env(
        "ASSETGEN_CONSOLE_MEDIA_ORIGINS",
        "Comma-separated origins the web console shows stored files from (storage's S3 public "
        "endpoint); empty allows any http(s) origin for pictures and videos.",
        (),
    )
    request_timeout_seconds: float = env(
        "ASSETGEN_REQUEST_TIMEOUT_SECONDS", "Deadline of calls to internal services.", 30.0
    )
