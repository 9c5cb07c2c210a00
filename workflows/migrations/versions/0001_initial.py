"""The initial schema: assets, lineage edges, classifications, the decision log, the outbox and locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 14:56:51
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The decision log is evidence: once written, a row may never change or disappear. The
# application only ever INSERTs; on PostgreSQL the database refuses everything else too, so a
# stray UPDATE, a manual DELETE or a TRUNCATE cannot quietly rewrite history. The triggers are
# statement-level, so even an UPDATE or DELETE that matches no row is refused. (SQLite has no
# TRUNCATE and is the single-user embedded setup; the hash chain still detects tampering there.)
APPEND_ONLY_FUNCTION = """
CREATE FUNCTION decision_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'decision_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Record a correction as a new decision-log entry instead.';
END;
$$
"""
APPEND_ONLY_TRIGGERS = (
    "CREATE TRIGGER decision_log_no_update_delete BEFORE UPDATE OR DELETE ON decision_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION decision_log_append_only()",
    "CREATE TRIGGER decision_log_no_truncate BEFORE TRUNCATE ON decision_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION decision_log_append_only()",
)


def _is_postgresql() -> bool:
    # The migration context, not op.get_bind(), so this also works when writing SQL offline.
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    """Create every table, index and constraint; on PostgreSQL, make decision_log append-only."""
    op.create_table(
        "asset",
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("description", sa.String(length=3000), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=False),
        sa.Column("location_uri", sa.String(length=500), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("license", sa.String(length=100), nullable=False),
        sa.Column("sensitivity", sa.String(length=32), nullable=False),
        sa.Column("contains_personal_data", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("risk_tier", sa.String(length=32), nullable=True),
        sa.Column("effective_tier", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_review_due", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_asset_effective_tier", "asset", ["effective_tier"], unique=False)
    op.create_index("ix_asset_kind", "asset", ["kind"], unique=False)
    op.create_index("ix_asset_next_review_due", "asset", ["next_review_due"], unique=False)
    op.create_index("ix_asset_owner_id", "asset", ["owner_id"], unique=False)
    op.create_index("ix_asset_slug", "asset", ["slug"], unique=True)
    op.create_index("ix_asset_status", "asset", ["status"], unique=False)

    op.create_table(
        "decision_log",
        # The application numbers entries itself (the chain's head + 1), so no sequence.
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=True),
        sa.Column("subject_slug", sa.String(length=64), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("hash"),
    )
    op.create_index("ix_decision_log_action", "decision_log", ["action"], unique=False)
    op.create_index("ix_decision_log_at", "decision_log", ["at"], unique=False)
    op.create_index("ix_decision_log_subject_id", "decision_log", ["subject_id"], unique=False)

    op.create_table(
        "leaderlock",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "outboxmessage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_channel", sa.String(length=32), nullable=False),
        sa.Column("sent_ts", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("updates_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outboxmessage_next_attempt_at", "outboxmessage", ["next_attempt_at"], unique=False)
    op.create_index("ix_outboxmessage_topic", "outboxmessage", ["topic"], unique=False)
    op.create_index("ix_outboxmessage_updates_id", "outboxmessage", ["updates_id"], unique=False)

    op.create_table(
        "classification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("transparency_flags", sa.JSON(), nullable=False),
        sa.Column("rationale", sa.String(length=3000), nullable=False),
        sa.Column("classified_by", sa.String(length=32), nullable=False),
        sa.Column("classified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["asset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_classification_asset_id", "classification", ["asset_id"], unique=False)

    op.create_table(
        "edge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["asset.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["asset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "target_id", "type", name="uq_edge"),
    )
    op.create_index("ix_edge_source_id", "edge", ["source_id"], unique=False)
    op.create_index("ix_edge_target", "edge", ["target_id"], unique=False)

    if _is_postgresql():
        op.execute(APPEND_ONLY_FUNCTION)
        for statement in APPEND_ONLY_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    """Drop everything upgrade() created."""
    if _is_postgresql():
        op.execute("DROP TRIGGER IF EXISTS decision_log_no_truncate ON decision_log")
        op.execute("DROP TRIGGER IF EXISTS decision_log_no_update_delete ON decision_log")
        op.execute("DROP FUNCTION IF EXISTS decision_log_append_only()")

    op.drop_index("ix_edge_target", table_name="edge")
    op.drop_index("ix_edge_source_id", table_name="edge")
    op.drop_table("edge")
    op.drop_index("ix_classification_asset_id", table_name="classification")
    op.drop_table("classification")
    op.drop_index("ix_outboxmessage_updates_id", table_name="outboxmessage")
    op.drop_index("ix_outboxmessage_topic", table_name="outboxmessage")
    op.drop_index("ix_outboxmessage_next_attempt_at", table_name="outboxmessage")
    op.drop_table("outboxmessage")
    op.drop_table("leaderlock")
    op.drop_index("ix_decision_log_subject_id", table_name="decision_log")
    op.drop_index("ix_decision_log_at", table_name="decision_log")
    op.drop_index("ix_decision_log_action", table_name="decision_log")
    op.drop_table("decision_log")
    op.drop_index("ix_asset_status", table_name="asset")
    op.drop_index("ix_asset_slug", table_name="asset")
    op.drop_index("ix_asset_owner_id", table_name="asset")
    op.drop_index("ix_asset_next_review_due", table_name="asset")
    op.drop_index("ix_asset_kind", table_name="asset")
    op.drop_index("ix_asset_effective_tier", table_name="asset")
    op.drop_table("asset")
