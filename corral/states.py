"""The states a run or a step can be in. Plain names, shared by every layer."""

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
"""States that may still change."""
FINAL_STATES = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, LOST, SKIPPED)
"""States that never change again."""
ALL_STATES = ACTIVE_STATES + FINAL_STATES
