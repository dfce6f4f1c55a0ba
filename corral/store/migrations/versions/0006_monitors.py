"""Monitor-only jobs: ping ids, states and received pings (issue 6, item 4).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from corral.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("ping_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_since", UTCDateTime(), nullable=False),
        sa.Column("watched_since", UTCDateTime(), nullable=False),
        sa.Column("last_ping_at", UTCDateTime()),
        sa.Column("last_start_at", UTCDateTime()),
        sa.Column("last_success_at", UTCDateTime()),
        sa.Column("last_failure_at", UTCDateTime()),
        sa.Column("last_exit_code", sa.Integer()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job", name="pk_monitors"),
        sa.UniqueConstraint("ping_id", name="uq_monitors_ping_id"),
    )
    op.create_table(
        "pings",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("remote", sa.String(64)),
        sa.Column("body", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_pings"),
    )
    op.create_index("ix_pings_job_id", "pings", ["job", "id"])


def downgrade() -> None:
    op.drop_index("ix_pings_job_id", "pings")
    op.drop_table("pings")
    op.drop_table("monitors")
