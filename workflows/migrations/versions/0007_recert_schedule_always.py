"""Every asset with a live grant has a recertification schedule row, so the sweep reads only that index.

Until now the sweep also looked for live grants on unscheduled assets and for unhonoured
`grant.recertification_requested` log entries: two anti-joins over every grant, which grew with the
inventory. From here on a grant going live gives its asset a row and impact analysis brings the row
forward (`workflows/recert_schedule.py`). This migration does the same for what is already there:
unscheduled assets with live grants get a provisional row, and assets with an unhonoured request are
brought forward; both are due now. Their first campaign check settles the real date from the policy
(it starts a campaign only if one was due or requested), exactly as the old sweep would have.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 20:50:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from workflows.types import UtcDateTime

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "('active', 'provisioning')"
SCHEDULE_UNSCHEDULED = f"""
INSERT INTO recert_schedule (asset_id, next_due_at, honoured_seq, provisional)
SELECT DISTINCT g.asset_id, :now, 0, TRUE FROM access_grant g
WHERE g.status IN {_LIVE} AND NOT EXISTS (SELECT 1 FROM recert_schedule s WHERE s.asset_id = g.asset_id)
"""
BRING_REQUESTED_FORWARD = f"""
UPDATE recert_schedule SET next_due_at = :now
WHERE next_due_at > :now AND EXISTS (
    SELECT 1 FROM decision_log d JOIN access_grant g ON d.subject_id = g.id
    WHERE d.action = 'grant.recertification_requested' AND d.subject_type = 'grant'
      AND g.asset_id = recert_schedule.asset_id AND g.status IN {_LIVE} AND d.seq > recert_schedule.honoured_seq)
"""


def upgrade() -> None:
    """Add `provisional`; schedule every asset with a live grant; bring requested ones forward."""
    op.add_column("recert_schedule", sa.Column("provisional", sa.Boolean(), nullable=False,
                                               server_default=sa.false()))
    now = sa.bindparam("now", datetime.now(UTC), type_=UtcDateTime())
    for statement in (SCHEDULE_UNSCHEDULED, BRING_REQUESTED_FORWARD):
        op.execute(sa.text(statement).bindparams(now))


def downgrade() -> None:
    """Drop `provisional` (the rows stay: the old sweep reads them as they are)."""
    with op.batch_alter_table("recert_schedule") as batch:
        batch.drop_column("provisional")
