"""Marks for what the sweep has queued: `outboxmessage.queued_at` and the `queued_work` table.

The sweep queued every due item at every run, so a backlog was queued again and again: when the
workers fell behind, the broker's queue grew faster than they drained it (workflows/queued.py).
Now a queued outbox row or due item is left out of later sweeps until a worker takes it or the
claim window passes. Nothing starts marked, so the first sweep after the upgrade queues whatever
is due, as before.

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
    """Add the nullable `outboxmessage.queued_at` and the empty `queued_work`."""
    op.add_column("outboxmessage", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "queued_work",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "item_id"),
    )
    op.create_index("ix_queued_work_queued_at", "queued_work", ["queued_at"], unique=False)


def downgrade() -> None:
    """Drop both (the old sweep queues every due item, as it always did)."""
    op.drop_index("ix_queued_work_queued_at", table_name="queued_work")
    op.drop_table("queued_work")
    with op.batch_alter_table("outboxmessage") as batch:
        batch.drop_column("queued_at")
