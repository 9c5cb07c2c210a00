"""Recertification campaigns of grants, and orphaned assets.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 16:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create recert_schedule, recert_campaign, recert_item and orphaned_asset."""
    op.create_table(
        "recert_schedule",
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("honoured_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["asset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("asset_id"),
    )
    op.create_index("ix_recert_schedule_next_due_at", "recert_schedule", ["next_due_at"], unique=False)
    op.create_table(
        "recert_campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalate_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["asset_id"], ["asset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("asset_id", "period"),
    )
    op.create_index("ix_recert_campaign_asset_id", "recert_campaign", ["asset_id"], unique=False)
    op.create_index("ix_recert_campaign_escalate_at", "recert_campaign", ["escalate_at"], unique=False)
    op.create_table(
        "recert_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["recert_campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["grant_id"], ["access_grant.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "grant_id"),
    )
    op.create_index("ix_recert_item_campaign_id", "recert_item", ["campaign_id"], unique=False)
    op.create_index("ix_recert_item_grant_id", "recert_item", ["grant_id"], unique=False)
    op.create_table(
        "orphaned_asset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("former_owner_id", sa.String(length=32), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("taken_by", sa.String(length=32), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["asset_id"], ["asset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_orphaned_asset_asset_id", "orphaned_asset", ["asset_id"], unique=False)
    op.create_index("ix_orphaned_asset_former_owner_id", "orphaned_asset", ["former_owner_id"], unique=False)
    op.create_index("ix_orphaned_asset_open", "orphaned_asset", ["open"], unique=False)


def downgrade() -> None:
    """Drop the recertification and orphan tables."""
    op.drop_table("orphaned_asset")
    op.drop_table("recert_item")
    op.drop_table("recert_campaign")
    op.drop_table("recert_schedule")
