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
    UniqueConstraint,
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

from corral.states import (  # noqa: E402,F401 - re-exported: the store speaks in these states
    ACTIVE_STATES,
    ALL_STATES,
    CANCELLED,
    FAILED,
    FINAL_STATES,
    LOST,
    PENDING,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
)

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
    # The dashboard's per-job counts by state and last run (0005): read from
    # the index alone instead of a million table rows.
    Index("ix_runs_job_state_id", "job", "state", "id"),
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

# Step states are the run states (pipeline.PENDING ... pipeline.SKIPPED).
# A pipeline run's own row has no process; each step row has one.
steps = Table(
    "steps",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("run_id", Integer().with_variant(BigInteger, "postgresql"), ForeignKey("runs.id"), nullable=False),
    Column("name", String(64), nullable=False),
    # Position of the step in the job file, for display order.
    Column("position", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(32)),
    Column("message", Text),
    Column("attempt", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("pid", Integer),
    Column("pgid", Integer),
    Column("proc_start", Float),
    Column("peak_rss", BigInteger),
    Column("cpu_seconds", Float),
    Column("log_path", Text),
    Column("log_bytes", BigInteger),
    # JSON object of what the step wrote to $CORRAL_OUTPUT.
    Column("outputs", Text),
    # For a step carried over by `corral retry --from-failed`: the step row it copies.
    Column("kept_from", Integer().with_variant(BigInteger, "postgresql"), ForeignKey("steps.id")),
    UniqueConstraint("run_id", "name", name="uq_steps_run_id_name"),
)

# What a run produced: the outputs of its succeeded steps, and its result
# (verdict, note). A run that did not succeed has verdict "error".
run_results = Table(
    "run_results",
    metadata,
    Column("run_id", Integer().with_variant(BigInteger, "postgresql"), ForeignKey("runs.id"), primary_key=True),
    Column("outputs", Text),
    Column("verdict", String(32)),
    Column("note", Text),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# -- events (issue 6): the outbox with its gapless sequence, deliveries, monitors ---

# Every change of a run's or job's state appends one row here in the same
# transaction as the change (the outbox). ``id`` only orders the outbox: a
# transaction that commits late leaves a hole in ``id`` that a reader may
# already have passed. ``seq`` is the feed's number: assigned later by the one
# publisher (PostgreSQL advisory lock / SQLite write lock), strictly increasing
# and gapless in commit order. See docs/events.md.
events = Table(
    "events",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("seq", BigInteger, unique=True),
    Column("type", String(32), nullable=False),
    Column("job", String(64), nullable=False),
    Column("run_id", Integer().with_variant(BigInteger, "postgresql")),
    Column("old_state", String(16)),
    Column("new_state", String(16)),
    Column("reason", String(32)),
    Column("message", Text),
    Column("at", UTCDateTime(), nullable=False),
    # "run:<id>" or "job:<name>": an event whose hash equals the last published
    # event of the same subject is a re-emission and is not published again.
    Column("subject", String(96), nullable=False),
    Column("payload_hash", String(64), nullable=False),
    # NULL until the publisher has looked at the row (published, or dropped as
    # a duplicate with ``seq`` left NULL).
    Column("published_at", UTCDateTime()),
    Index("ix_events_published_at_id", "published_at", "id"),
    Index("ix_events_subject_seq", "subject", "seq"),
)

# One row (id 1). The publisher writes it first in its transaction: on SQLite
# that takes the database's write lock before anything is read, so two
# publishers can never number the same rows.
event_publisher = Table(
    "event_publisher",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("published_at", UTCDateTime(), nullable=False),
)

# How far each consumer of the feed (e.g. the notifier) has read.
event_cursors = Table(
    "event_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Per job and alert condition: whether it is currently raised, so alerts fire
# on a change only (fail, fail, fail, succeed = one failure + one recovery).
alert_state = Table(
    "alert_state",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("condition", String(16), primary_key=True),
    Column("active", Boolean, nullable=False),
    Column("since", UTCDateTime(), nullable=False),
    Column("run_id", Integer().with_variant(BigInteger, "postgresql")),
    Column("notified_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# The notification outbox: one row per (alert, channel), sent at least once.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("job", String(64), nullable=False),
    Column("run_id", Integer().with_variant(BigInteger, "postgresql")),
    Column("kind", String(16), nullable=False),
    Column("event_seq", BigInteger),
    Column("payload", Text, nullable=False),
    # pending -> sent | failed (gave up) | suppressed (quiet hours, rate limit)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_deliveries_channel_created_at", "channel", "created_at"),
)

# -- monitor-only jobs (issue 6, item 4): ping ids, states, received pings ----------

# One row per monitor-only job. ``ping_id`` is the secret in /ping/<ping_id>:
# given in the job file (monitor.id) or a random UUID made on first sight and
# kept, so it survives restarts and edits of the job file.
monitors = Table(
    "monitors",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("ping_id", String(36), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("state_since", UTCDateTime(), nullable=False),
    Column("watched_since", UTCDateTime(), nullable=False),
    Column("last_ping_at", UTCDateTime()),
    Column("last_start_at", UTCDateTime()),
    Column("last_success_at", UTCDateTime()),
    Column("last_failure_at", UTCDateTime()),
    Column("last_exit_code", Integer),
    Column("updated_at", UTCDateTime(), nullable=False),
)

pings = Table(
    "pings",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("exit_code", Integer),
    Column("at", UTCDateTime(), nullable=False),
    Column("remote", String(64)),
    Column("body", Text),
    Index("ix_pings_job_id", "job", "id"),
)

# -- web auth (issue 5): users, API tokens, sessions, audit log -----------------------

web_users = Table(
    "web_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    # argon2id, in the PHC string format (algorithm, parameters and salt included).
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

web_tokens = Table(
    "web_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    # SHA-256 of the token: tokens are 256 random bits, so a slow KDF adds nothing
    # and a fast, indexed lookup per request is what matters.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128)),
    Column("revoked_at", UTCDateTime()),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    # SHA-256 of the session cookie: a stolen database does not give live sessions.
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(64), ForeignKey("web_users.name", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_web_sessions_expires_at", "expires_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(32), nullable=False),
    Column("job", String(64)),
    Column("run_id", Integer().with_variant(BigInteger, "postgresql")),
    Column("detail", Text),
    Index("ix_audit_log_job_id", "job", "id"),
)
