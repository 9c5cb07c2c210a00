"""Audit anchors: the decision log's head hash, count and time as posted to the audit channel.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# An anchor is evidence too: deleting the anchors would let a rewritten log pass
# `steward audit verify --anchors`. So on PostgreSQL an anchor may only ever gain the Slack
# channel and ts it was posted as (once, while its ts is still empty); every other UPDATE, and any
# DELETE or TRUNCATE, is refused. The copy in Slack stays the witness either way.
GUARD_FUNCTION = """
CREATE FUNCTION audit_anchor_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_LEVEL = 'ROW' THEN
        IF OLD.ts = '' AND (NEW.id, NEW.seq, NEW.head_hash, NEW.entry_count, NEW.anchored_at, NEW.outbox_id)
                IS NOT DISTINCT FROM
                (OLD.id, OLD.seq, OLD.head_hash, OLD.entry_count, OLD.anchored_at, OLD.outbox_id) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_anchor is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'An anchor only ever gains the Slack channel and ts it was posted as.';
END;
$$
"""
GUARD_TRIGGERS = (
    ("CREATE TRIGGER audit_anchor_receipt_only BEFORE UPDATE ON audit_anchor "
     "FOR EACH ROW EXECUTE FUNCTION audit_anchor_guard()"),
    ("CREATE TRIGGER audit_anchor_no_delete BEFORE DELETE ON audit_anchor "
     "FOR EACH STATEMENT EXECUTE FUNCTION audit_anchor_guard()"),
    ("CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor "
     "FOR EACH STATEMENT EXECUTE FUNCTION audit_anchor_guard()"),
)


def _is_postgresql() -> bool:
    # The migration context, not op.get_bind(), so this also works when writing SQL offline.
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    """Create audit_anchor; on PostgreSQL, let an anchor only gain its Slack channel and ts."""
    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("anchored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_anchor_anchored_at", "audit_anchor", ["anchored_at"], unique=False)
    op.create_index("ix_audit_anchor_outbox_id", "audit_anchor", ["outbox_id"], unique=False)
    op.create_index("ix_audit_anchor_seq", "audit_anchor", ["seq"], unique=False)
    if _is_postgresql():
        op.execute(GUARD_FUNCTION)
        for statement in GUARD_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    """Drop audit_anchor and its guard."""
    if _is_postgresql():
        op.execute("DROP TRIGGER IF EXISTS audit_anchor_no_truncate ON audit_anchor")
        op.execute("DROP TRIGGER IF EXISTS audit_anchor_no_delete ON audit_anchor")
        op.execute("DROP TRIGGER IF EXISTS audit_anchor_receipt_only ON audit_anchor")
        op.execute("DROP FUNCTION IF EXISTS audit_anchor_guard()")
    op.drop_index("ix_audit_anchor_seq", table_name="audit_anchor")
    op.drop_index("ix_audit_anchor_outbox_id", table_name="audit_anchor")
    op.drop_index("ix_audit_anchor_anchored_at", table_name="audit_anchor")
    op.drop_table("audit_anchor")
