"""Runs, job state and nodes.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from corral.store.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("message", sa.Text()),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("slot_key", sa.String(128)),
        sa.Column("scheduled_for", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("admitted", sa.Boolean(), nullable=False),
        sa.Column("catchup", sa.Boolean(), nullable=False),
        sa.Column("not_before", UTCDateTime()),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("ended_at", UTCDateTime()),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("signal", sa.Integer()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of", BigId, sa.ForeignKey("runs.id", name="fk_runs_retry_of_runs")),
        sa.Column("node", sa.String(128)),
        sa.Column("pid", sa.Integer()),
        sa.Column("pgid", sa.Integer()),
        sa.Column("proc_start", sa.Float()),
        sa.Column("peak_rss", sa.BigInteger()),
        sa.Column("cpu_seconds", sa.Float()),
        sa.Column("log_path", sa.Text()),
        sa.Column("log_bytes", sa.BigInteger()),
        sa.Column("log_dropped", sa.BigInteger()),
        sa.Column("stop_requested", sa.String(16)),
        sa.Column("params", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("slot_key", name="uq_runs_slot_key"),
    )
    op.create_index("ix_runs_job_id", "runs", ["job", "id"])
    op.create_index("ix_runs_state", "runs", ["state"])
    op.create_index("ix_runs_scheduled_for", "runs", ["scheduled_for"])
    op.create_table(
        "job_state",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_at", UTCDateTime()),
        sa.Column("paused_by", sa.String(128)),
        sa.Column("cursor", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job", name="pk_job_state"),
    )
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("stopped_at", UTCDateTime()),
        sa.Column("config_path", sa.Text()),
        sa.Column("config_loaded_at", UTCDateTime()),
        sa.Column("config_error", sa.Text()),
        sa.PrimaryKeyConstraint("name", name="pk_nodes"),
    )


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_table("job_state")
    op.drop_index("ix_runs_scheduled_for", "runs")
    op.drop_index("ix_runs_state", "runs")
    op.drop_index("ix_runs_job_id", "runs")
    op.drop_table("runs")
