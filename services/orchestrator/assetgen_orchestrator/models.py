"""The orchestrator's tables — projects, API keys, boxes, assets and each asset's history — and their
plain row types.

The tables are SQLAlchemy Core ``Table`` objects (the migrations' target and the store's
statements); a row read or about to be written is a plain dataclass (``BoxRow``, ``AssetRow``,
``TransitionRow``) whose fields are the table's columns, with the same defaults.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "ASSET_COLUMNS",
    "DEFAULT_PROJECT_ID",
    "ApiKeyRow",
    "AssetRow",
    "BoxRow",
    "ProjectRow",
    "Status",
    "Step",
    "TransitionRow",
    "api_keys_table",
    "assets_table",
    "boxes_table",
    "cost_ledger_table",
    "leases_table",
    "metadata",
    "projects_table",
    "transitions_table",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class Status(enum.StrEnum):
    """Public status of an asset."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        """Whether nothing can follow this status (except a retry, which starts a new attempt)."""
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELED)


class Step(enum.StrEnum):
    """Finer internal step under the public status; says what the next job run must do."""

    WAITING_PARENT = "waiting_parent"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    POLLING = "polling"
    WAITING_CALLBACK = "waiting_callback"
    """The submit's outcome is unknown but it carried our callback URL: its callback adopts the task."""
    INGESTING = "ingesting"
    DONE = "done"


metadata = MetaData()
"""The orchestrator's schema (the migrations' target)."""


def _moment(name: str, *, nullable: bool = False) -> Column[dt.datetime]:
    default = None if nullable else utcnow
    return Column(name, DateTime(timezone=True), nullable=nullable, default=default)


DEFAULT_PROJECT_ID = "default"
"""The project that boxes made before projects existed moved into; it cannot be deleted."""

projects_table = Table(
    "projects",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    _moment("created_at"),
    # Most the project's generations may cost, a decimal string (``assetgen_runtime.money``); None: no limit.
    Column("budget", Text, nullable=True),
)

api_keys_table = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project_id", String(40), ForeignKey("projects.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("scopes", String(100), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    _moment("created_at"),
    _moment("revoked_at", nullable=True),
    Index("ix_api_keys_project_id", "project_id"),
)
"""API keys, stored hashed: ``scopes`` is a space-separated list; the secret itself is never stored."""

boxes_table = Table(
    "boxes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    _moment("created_at"),
    _moment("updated_at"),
    # The server default places boxes an older replica inserts during a rolling upgrade.
    Column(
        "project_id",
        String(40),
        ForeignKey("projects.id"),
        nullable=False,
        default=DEFAULT_PROJECT_ID,
        server_default=DEFAULT_PROJECT_ID,
    ),
    Index("ix_boxes_project_id_id", "project_id", "id"),
    # Most the box's generations may cost, a decimal string; None: only the project's budget applies.
    Column("budget", Text, nullable=True),
)

assets_table = Table(
    "assets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("box_id", String(40), ForeignKey("boxes.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("status", String(16), nullable=False),
    Column("step", String(16), nullable=False),
    Column("source_type", String(16), nullable=False),
    Column("model", String(200), nullable=False, default=""),
    Column("prompt", Text, nullable=False, default=""),
    Column("image_url", Text, nullable=False, default=""),
    Column("image_urls_json", Text, nullable=False, default="[]"),
    Column("config_json", Text, nullable=False, default="{}"),
    Column("parent_asset_id", String(40), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("attempt", Integer, nullable=False, default=1),
    Column("external_task_id", Text, nullable=False, default=""),
    Column("task_handle_json", Text, nullable=False, default=""),
    Column("result_url", Text, nullable=False, default=""),
    Column("poll_policy_json", Text, nullable=False, default="{}"),
    Column("raw_status", String(200), nullable=False, default=""),
    Column("progress", Float, nullable=False, default=0.0),
    Column("error_count", Integer, nullable=False, default=0),
    Column("error_message", Text, nullable=False, default=""),
    Column("filename", String(300), nullable=False, default=""),
    Column("object_key", Text, nullable=False, default=""),
    Column("content_type", String(100), nullable=False, default=""),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("sha256", String(64), nullable=False, default=""),
    Column("job_generation", Integer, nullable=False, default=0),
    _moment("created_at"),
    _moment("updated_at"),
    _moment("submitted_at", nullable=True),
    _moment("finished_at", nullable=True),
    _moment("attempt_started_at", nullable=True),
    # The attempt's cost (``costs.AssetCost`` as JSON): estimate, unit price, charge; "" when unpriced.
    Column("cost_json", Text, nullable=False, default=""),
    # Place in the provider's queue while every key is full (1: next to start); 0 when not queued.
    Column("queue_position", Integer, nullable=False, default=0),
    UniqueConstraint("box_id", "idempotency_key", name="uq_assets_box_idempotency_key"),
    Index("ix_assets_box_id_id", "box_id", "id"),
    Index("ix_assets_parent_asset_id", "parent_asset_id"),
    # The reconciler looks for in-flight assets; the status changes a few times per generation, so
    # indexing it costs little, unlike updated_at, which every write changes.
    Index("ix_assets_status", "status"),
)

transitions_table = Table(
    "asset_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset_id", String(40), ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("from_status", String(16), nullable=False, default=""),
    Column("to_status", String(16), nullable=False),
    Column("step", String(16), nullable=False),
    Column("message", Text, nullable=False, default=""),
    _moment("at"),
    Index("ix_asset_transitions_asset_id", "asset_id", "id"),
)

leases_table = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
"""Named leases: which replica holds a job only one may do at a time (the reconciler), until when."""

cost_ledger_table = Table(
    "cost_ledger",
    metadata,
    Column("asset_id", String(40), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("project_id", String(40), nullable=False),
    Column("box_id", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("key_id", String(100), nullable=False, default=""),
    Column("currency", String(3), nullable=False),
    Column("estimated_nanos", BigInteger, nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    _moment("created_at"),
    _moment("updated_at"),
    _moment("settled_at", nullable=True),
    Index("ix_cost_ledger_project_id_state", "project_id", "state"),
    Index("ix_cost_ledger_box_id_state", "box_id", "state"),
    Index("ix_cost_ledger_settled_at", "settled_at"),
)
"""One entry per priced asset attempt, never deleted with its asset (spend stays spent).

``state`` moves estimated → reserved → charged or released, each move a conditional update, so a
step run twice writes it once. ``amount_nanos`` is what the entry holds against budgets now: the
estimate until it settles, then the charge (0 when released). No foreign keys: the entry outlives
its asset and box.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class BoxRow:
    """A box: it groups the assets of one piece of work."""

    id: str
    name: str
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    updated_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    project_id: str = DEFAULT_PROJECT_ID
    budget: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectRow:
    """A project: the boxes of one team or service, and the keys that reach them."""

    id: str
    name: str
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    budget: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key of a project, as stored: the hash of its secret, never the secret."""

    id: str
    project_id: str
    name: str
    scopes: str
    secret_sha256: str
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    revoked_at: dt.datetime | None = None


@dataclasses.dataclass(slots=True)
class AssetRow:
    """An uploaded or generated file and the state of its generation.

    ``version`` increases with every change; every update is a compare-and-set on it, so two workers
    or a late message can never move an asset backwards or finish it twice. Mutable: the store
    applies a successful update to the caller's row in place.
    """

    id: str
    box_id: str
    status: str
    step: str
    source_type: str
    version: int = 1
    model: str = ""
    prompt: str = ""
    image_url: str = ""
    image_urls_json: str = "[]"
    config_json: str = "{}"
    parent_asset_id: str | None = None
    idempotency_key: str | None = None
    attempt: int = 1
    external_task_id: str = ""
    task_handle_json: str = ""
    result_url: str = ""
    poll_policy_json: str = "{}"
    raw_status: str = ""
    progress: float = 0.0
    error_count: int = 0
    error_message: str = ""
    filename: str = ""
    object_key: str = ""
    content_type: str = ""
    size_bytes: int = 0
    sha256: str = ""
    job_generation: int = 0
    """Raised by the reconciler when it publishes a new job: jobs of older generations stop."""
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    updated_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    submitted_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    attempt_started_at: dt.datetime | None = None
    """When this attempt was accepted (a retry's, or the generation's); None on older rows."""
    cost_json: str = ""
    """The attempt's cost (``costs.AssetCost``); '' when the model has no price."""
    queue_position: int = 0
    """Place in its provider's queue (1: next to start) while held back there; 0 otherwise."""

    def values(self) -> dict[str, object]:
        """Every column's value, by column name."""
        return {name: getattr(self, name) for name in ASSET_COLUMNS}


@dataclasses.dataclass(frozen=True, slots=True)
class TransitionRow:
    """One step of an asset's history: what it moved from and to, when, and why."""

    id: int
    asset_id: str
    attempt: int
    to_status: str
    step: str
    from_status: str = ""
    message: str = ""
    at: dt.datetime = dataclasses.field(default_factory=utcnow)


ASSET_COLUMNS = tuple(field.name for field in dataclasses.fields(AssetRow))
"""The asset table's column names, which are ``AssetRow``'s fields."""
