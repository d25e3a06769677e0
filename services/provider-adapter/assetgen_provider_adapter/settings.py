"""The provider-adapter's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from assetgen_runtime.batching import GROUP_COMMIT_LINGER
from assetgen_runtime.settings import ServiceSettings, env

__all__ = ["ProviderAdapterSettings"]


@dataclass(frozen=True, kw_only=True)
class ProviderAdapterSettings(ServiceSettings):
    """Everything the provider-adapter needs to know about its environment (besides ``ServiceSettings``)."""

    grpc_port: int = env("ASSETGEN_GRPC_PORT", "Port of the provider-adapter's gRPC API.", 50053)
    grpc_host: str = env(
        "ASSETGEN_GRPC_HOST", "Address the gRPC API binds (127.0.0.1: this machine only).", "0.0.0.0"
    )
    service_token: str = env(
        "ASSETGEN_SERVICE_TOKEN",
        "Service credential: every call but health and reflection must carry it, and calls to other "
        "services carry it (empty: not required).",
        "",
    )
    data_dir: str = env("ASSETGEN_DATA_DIR", "Folder for local data (the default SQLite file).", ".assetgen")
    catalog_database_url: str = env(
        "ASSETGEN_CATALOG_DATABASE_URL",
        "SQLAlchemy async URL of the provider/model catalog (default: SQLite under ASSETGEN_DATA_DIR).",
        "",
    )
    storage_addr: str = env("ASSETGEN_STORAGE_ADDR", "host:port of the storage service.", "127.0.0.1:50054")
    secret_key: str = env(
        "ASSETGEN_SECRET_KEY",
        "Key that encrypts provider API keys at rest (any string; default: a key file in ASSETGEN_DATA_DIR).",
        "",
    )
    provider_secrets_dir: str = env(
        "ASSETGEN_PROVIDER_SECRETS_DIR",
        "Folder of provider API key files that providers reference as file:<name> (a mounted Secret).",
        "/var/run/secrets/assetgen-providers",
    )
    allowed_fetch_networks: tuple[str, ...] = env(
        "ASSETGEN_ALLOWED_FETCH_NETWORKS",
        "Comma-separated CIDRs provider-supplied URLs may reach besides public addresses.",
        (),
    )
    provider_hosts: tuple[str, ...] = env(
        "ASSETGEN_PROVIDER_HOSTS",
        "Comma-separated hosts provider base URLs, absolute model endpoints and profiles' auth.hosts may "
        "name: exact (api.kie.ai) or any subdomain (*.replicate.com). Empty: any host whose addresses "
        "pass the fetch guard.",
        (),
    )
    key_ref_allowlist: tuple[str, ...] = env(
        "ASSETGEN_KEY_REF_ALLOWLIST",
        "Providers that may use an env:/file: API key reference, as ref=provider[,provider...] entries "
        "separated by commas, e.g. env:ASSETGEN_PROVIDER_KEY_KIE=kie,file:shared=prov-a,prov-b (an item "
        "without '=' adds a provider to the entry before it). A listed reference is usable by exactly "
        "those providers; an unlisted one only by the provider first created with it.",
        (),
    )
    max_inline_result_bytes: int = env(
        "ASSETGEN_MAX_INLINE_RESULT_BYTES", "Largest inline (base64 or body) result accepted.", 64 * 1024**2
    )
    http_timeout_seconds: float = env(
        "ASSETGEN_PROVIDER_HTTP_TIMEOUT_SECONDS", "Default timeout of one provider HTTP call.", 30.0
    )
    db_write_linger_ms: float = env(
        "ASSETGEN_DB_WRITE_LINGER_MS",
        "PostgreSQL: writes made within this many ms of each other are committed as one statement "
        "(group commit; 0: each alone).",
        GROUP_COMMIT_LINGER * 1000,
    )
    poll_concurrency: int = env(
        "ASSETGEN_POLL_CONCURRENCY",
        "Most tasks of one PollTasks call polled at once (each is one provider request). Small on "
        "purpose: httpx's connection pool costs CPU per request that grows with its connections squared.",
        16,
    )
    rpc_timeout_seconds: float = env("ASSETGEN_RPC_TIMEOUT_SECONDS", "Deadline of calls to peers.", 30.0)

    @property
    def resolved_catalog_database_url(self) -> str:
        """The catalog URL, defaulting to SQLite in the data folder."""
        return self.catalog_database_url or f"sqlite+aiosqlite:///{self.data_dir}/catalog.db"
