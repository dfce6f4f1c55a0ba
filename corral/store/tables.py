"""The schema, as SQLAlchemy Core tables on one MetaData.

Changing anything here needs a new Alembic migration in ``corral/migrations``;
``tests/integration/test_migrations.py`` fails when the two disagree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from corral.store.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Run states. Active states may still change; final states never do.
PENDING = "pending"  # admitted, waiting to be claimed by a worker
QUEUED = "queued"  # waiting behind a running run of the same job (overlap queue_one/queue_all/replace)
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"
LOST = "lost"
SKIPPED = "skipped"

ACTIVE_STATES = (PENDING, QUEUED, RUNNING)
FINAL_STATES = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, LOST, SKIPPED)
ALL_STATES = ACTIVE_STATES + FINAL_STATES

runs = Table(
    "runs",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(32)),
    Column("message", Text),
    Column("trigger", String(16), nullable=False),
    # One row per scheduled slot: "<job>@<UTC ISO instant>". NULL for manual runs
    # and retries. Unique, so a restart can never fire a slot twice.
    Column("slot_key", String(128), unique=True),
    Column("scheduled_for", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # False while a run created outside the engine (e.g. `corral trigger`) has
    # not yet been through the overlap policy.
    Column("admitted", Boolean, nullable=False, default=True),
    Column("catchup", Boolean, nullable=False, default=False),
    Column("not_before", UTCDateTime()),
    Column("started_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("attempt", Integer, nullable=False, default=1),
    Column("retry_of", Integer().with_variant(BigInteger, "postgresql"), ForeignKey("runs.id")),
    Column("node", String(128)),
    Column("pid", Integer),
    Column("pgid", Integer),
    Column("proc_start", Float),
    Column("peak_rss", BigInteger),
    Column("cpu_seconds", Float),
    Column("log_path", Text),
    Column("log_bytes", BigInteger),
    Column("log_dropped", BigInteger),
    Column("stop_requested", String(16)),
    Column("params", Text),
    Index("ix_runs_job_id", "job", "id"),
    Index("ix_runs_state", "state"),
    Index("ix_runs_scheduled_for", "scheduled_for"),
)

job_state = Table(
    "job_state",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_at", UTCDateTime()),
    Column("paused_by", String(128)),
    # Slots up to and including this instant have been turned into run records.
    Column("cursor", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime()),
    Column("config_path", Text),
    Column("config_loaded_at", UTCDateTime()),
    # The last reload error, shown by `corral jobs`; NULL when the job file is good.
    Column("config_error", Text),
)

# -- pipelines (issue 3): steps of a run, run outputs, links between runs ----------

# -- events (issue 6): the outbox with its gapless sequence, deliveries, monitors ---

# -- web auth (issue 5): users, API tokens, sessions, audit log -----------------------
