"""Pipelines: steps, outputs, parameters, triggers, wait-for (issue 3).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from corral.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


BigId = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "steps",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", BigId, sa.ForeignKey("runs.id", name="fk_steps_run_id_runs"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("message", sa.Text()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("ended_at", UTCDateTime()),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("signal", sa.Integer()),
        sa.Column("pid", sa.Integer()),
        sa.Column("pgid", sa.Integer()),
        sa.Column("proc_start", sa.Float()),
        sa.Column("peak_rss", sa.BigInteger()),
        sa.Column("cpu_seconds", sa.Float()),
        sa.Column("log_path", sa.Text()),
        sa.Column("log_bytes", sa.BigInteger()),
        sa.Column("outputs", sa.Text()),
        sa.Column("kept_from", BigId, sa.ForeignKey("steps.id", name="fk_steps_kept_from_steps")),
        sa.PrimaryKeyConstraint("id", name="pk_steps"),
        sa.UniqueConstraint("run_id", "name", name="uq_steps_run_id_name"),
    )
    op.create_table(
        "run_results",
        sa.Column("run_id", BigId, sa.ForeignKey("runs.id", name="fk_run_results_run_id_runs"), nullable=False),
        sa.Column("outputs", sa.Text()),
        sa.Column("verdict", sa.String(32)),
        sa.Column("note", sa.Text()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_results"),
    )


def downgrade() -> None:
    op.drop_table("run_results")
    op.drop_table("steps")
