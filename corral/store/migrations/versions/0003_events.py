"""Events outbox, notifications, monitors (issue 6).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from corral.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger()),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("run_id", BigId),
        sa.Column("old_state", sa.String(16)),
        sa.Column("new_state", sa.String(16)),
        sa.Column("reason", sa.String(32)),
        sa.Column("message", sa.Text()),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("subject", sa.String(96), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("published_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("seq", name="uq_events_seq"),
    )
    op.create_index("ix_events_published_at_id", "events", ["published_at", "id"])
    op.create_index("ix_events_subject_seq", "events", ["subject", "seq"])
    op.create_table(
        "event_publisher",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_publisher"),
    )
    op.create_table(
        "event_cursors",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_event_cursors"),
    )
    op.create_table(
        "alert_state",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("condition", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("run_id", BigId),
        sa.Column("notified_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job", "condition", name="pk_alert_state"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("run_id", BigId),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("event_seq", sa.BigInteger()),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_status_next_attempt_at", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_channel_created_at", "deliveries", ["channel", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_channel_created_at", "deliveries")
    op.drop_index("ix_deliveries_status_next_attempt_at", "deliveries")
    op.drop_table("deliveries")
    op.drop_table("alert_state")
    op.drop_table("event_cursors")
    op.drop_table("event_publisher")
    op.drop_index("ix_events_subject_seq", "events")
    op.drop_index("ix_events_published_at_id", "events")
    op.drop_table("events")
