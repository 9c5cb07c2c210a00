"""`outboxmessage.queued_at`: when the sweep last handed the row to the broker.

The sweep queued every due row at every run, so a backlog was queued again and again: when the
workers fell behind, the broker's queue grew faster than they drained it. A queued row is now left
out of later sweeps until a worker claims it or the claim window passes. Existing rows start
unqueued, so the first sweep after the upgrade queues whatever is due, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 06:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable `queued_at`."""
    op.add_column("outboxmessage", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop `queued_at` (the old sweep queues every due row, as it always did)."""
    with op.batch_alter_table("outboxmessage") as batch:
        batch.drop_column("queued_at")
