"""The orchestrator's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from assetgen_orchestrator.jobs import PULL_PAUSE
from assetgen_orchestrator.webhook_policy import DEFAULT_RETRY_SCHEDULE
from assetgen_runtime.batching import GROUP_COMMIT_LINGER
from assetgen_runtime.settings import ServiceSettings, env

__all__ = ["OrchestratorSettings"]


@dataclass(frozen=True, kw_only=True)
class OrchestratorSettings(ServiceSettings):
    """Everything the orchestrator needs to know about its environment (besides ``ServiceSettings``)."""

    grpc_port: int = env("ASSETGEN_GRPC_PORT", "Port of the orchestrator's gRPC API.", 50052)
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
    database_url: str = env(
        "ASSETGEN_DATABASE_URL",
        "SQLAlchemy async URL of the asset database (default: SQLite under ASSETGEN_DATA_DIR).",
        "",
    )
    nats_url: str = env(
        "ASSETGEN_NATS_URL",
        "NATS server URL (JetStream enabled); the nodes of a cluster comma-separated.",
        "nats://127.0.0.1:4222",
    )
    nats_replicas: int = env(
        "ASSETGEN_NATS_REPLICAS",
        "Copies JetStream keeps of each stream (jobs, events): 1 for one server, 3 on a 3-node "
        "cluster so the schedule survives losing a node.",
        1,
    )
    provider_adapter_addr: str = env(
        "ASSETGEN_PROVIDER_ADAPTER_ADDR", "host:port of the provider-adapter.", "127.0.0.1:50053"
    )
    storage_addr: str = env("ASSETGEN_STORAGE_ADDR", "host:port of the storage service.", "127.0.0.1:50054")
    worker_concurrency: int = env(
        "ASSETGEN_WORKER_CONCURRENCY",
        "Generation steps one replica runs at once (polls are mostly waiting).",
        256,
    )
    max_in_flight: int = env(
        "ASSETGEN_MAX_IN_FLIGHT", "Jobs the consumer may hold unacknowledged (max_ack_pending).", 50_000
    )
    db_write_linger_ms: float = env(
        "ASSETGEN_DB_WRITE_LINGER_MS",
        "PostgreSQL: writes made within this many ms of each other are committed as one statement "
        "(group commit; 0: each alone).",
        GROUP_COMMIT_LINGER * 1000,
    )
    max_pull_pause_ms: float = env(
        "ASSETGEN_MAX_PULL_PAUSE_MS",
        "Longest the job runner lets due jobs gather after a pull that emptied the consumer; polls "
        "fall due this much early, so none runs late for it.",
        PULL_PAUSE * 1000,
    )
    submit_retries: int = env(
        "ASSETGEN_SUBMIT_RETRIES",
        "Tries of a submission that fails for a transient reason before FAILED (polls and result "
        "copies retry until the generation's deadline instead).",
        5,
    )
    retry_base_seconds: float = env(
        "ASSETGEN_RETRY_BASE_SECONDS", "First retry delay; doubles each try.", 2.0
    )
    retry_max_seconds: float = env(
        "ASSETGEN_RETRY_MAX_SECONDS",
        "Longest wait between retries of a failing poll or result copy; those retry until the "
        "generation's deadline, not a number of times (the provider has the paid task).",
        60.0,
    )
    reconcile_interval_seconds: float = env(
        "ASSETGEN_RECONCILE_INTERVAL_SECONDS",
        "How often the reconciler (one replica at a time) looks for in-flight assets without a job.",
        30.0,
    )
    reconcile_quiet_seconds: float = env(
        "ASSETGEN_RECONCILE_QUIET_SECONDS",
        "An in-flight asset unchanged this long is checked for a job in the jobs stream, and given "
        "a new one if it has none.",
        120.0,
    )
    ack_wait_seconds: float = env(
        "ASSETGEN_ACK_WAIT_SECONDS", "How long a job may go unacknowledged before redelivery.", 60.0
    )
    default_deadline_seconds: float = env(
        "ASSETGEN_DEFAULT_DEADLINE_SECONDS",
        "Overall deadline of a generation whose profile sets none.",
        3600.0,
    )
    rpc_timeout_seconds: float = env("ASSETGEN_RPC_TIMEOUT_SECONDS", "Deadline of calls to peers.", 30.0)
    submit_timeout_seconds: float = env(
        "ASSETGEN_SUBMIT_TIMEOUT_SECONDS",
        "Deadline of one submission through the provider-adapter (above the provider's own timeout).",
        90.0,
    )
    ingest_timeout_seconds: float = env(
        "ASSETGEN_INGEST_TIMEOUT_SECONDS", "Deadline of copying one result into S3.", 1800.0
    )
    events_max_age_seconds: float = env(
        "ASSETGEN_EVENTS_MAX_AGE_SECONDS", "How long status events are kept in JetStream.", 86_400.0
    )
    webhook_retry_schedule: str = env(
        "ASSETGEN_WEBHOOK_RETRY_SCHEDULE",
        "Waits before each retry of a webhook delivery that failed, comma-separated (5s, 5m, 2h); "
        "after the last one the delivery is given up.",
        DEFAULT_RETRY_SCHEDULE,
    )
    webhook_timeout_seconds: float = env(
        "ASSETGEN_WEBHOOK_TIMEOUT_SECONDS", "Time one webhook delivery try may take.", 10.0
    )
    webhook_allowed_networks: tuple[str, ...] = env(
        "ASSETGEN_WEBHOOK_ALLOWED_NETWORKS",
        "Comma-separated CIDRs webhook endpoints may be at besides public addresses (default none: "
        "a private, loopback or metadata address is refused at registration and at sending).",
        (),
    )
    public_url: str = env(
        "ASSETGEN_PUBLIC_URL",
        "The gateway's externally reachable base URL (https://assetgen.example.com): submits to "
        "providers that call back carry a callback URL under it (empty: no callbacks, polling only).",
        "",
    )
    callback_secret: str = env(
        "ASSETGEN_CALLBACK_SECRET",
        "Signs the tokens of callback URLs; every replica needs the same (empty: random per process, "
        "so callbacks for tasks submitted before a restart are refused and safety polls find them).",
        "",
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data folder."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir}/orchestrator.db"
