"""Reviews: each owner's weekly nudge schedule and each asset's snoozes and overdue escalation.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create review_nudge and asset_review."""
    op.create_table(
        "review_nudge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("next_nudge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_nudged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id"),
    )
    op.create_index("ix_review_nudge_next_nudge_at", "review_nudge", ["next_nudge_at"], unique=False)
    op.create_index("ix_review_nudge_outbox_id", "review_nudge", ["outbox_id"], unique=False)
    op.create_table(
        "asset_review",
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("snoozes", sa.Integer(), nullable=False),
        sa.Column("escalated_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_action", sa.String(length=32), nullable=False),
        sa.Column("last_action_by", sa.String(length=32), nullable=False),
        sa.Column("last_action_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["asset_id"], ["asset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("asset_id"),
    )


def downgrade() -> None:
    """Drop asset_review and review_nudge."""
    op.drop_table("asset_review")
    op.drop_index("ix_review_nudge_outbox_id", table_name="review_nudge")
    op.drop_index("ix_review_nudge_next_nudge_at", table_name="review_nudge")
    op.drop_table("review_nudge")
