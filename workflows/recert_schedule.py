"""Keeping `recert_schedule` complete, so the sweep finds due recertifications through one index.

Every asset with a live grant has a row. A grant going live gives its asset a *provisional* row (when it
has none), due when the asset's grants could first be due under the shortest interval any tier may have;
the campaign check at that time (`recertification.start_due`) settles the real date from the asset's
tier. Impact analysis brings an asset's row forward, so its recertification starts at the next sweep.
Both are writes on the one row of one asset: the sweep never joins grants or the decision log.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from workflows.db import insert_if_absent
from workflows.enums import RiskTier
from workflows.models import RecertSchedule
from workflows.policy import Policy

# The policy's lower bound on any tier's `recertify_interval_days`: the earliest a grant may need recertifying.
SHORTEST_INTERVAL = timedelta(days=1)


def schedule_live_grant(*, session: Session, asset_id: int, now: datetime, policy: Policy | None) -> None:
    """A grant on the asset went live now: make sure the asset's grants are scheduled for recertification."""
    shortest = min(policy.recertify_interval(t) for t in RiskTier) if policy is not None else SHORTEST_INTERVAL
    _schedule_provisionally(session, asset_id, now + shortest)


def bring_forward(*, session: Session, asset_ids: Iterable[int], now: datetime) -> None:
    """Make these assets' recertification due now (impact analysis asked for it)."""
    ids = sorted(set(asset_ids))
    for asset_id in ids:
        _schedule_provisionally(session, asset_id, now)
    session.exec(update(RecertSchedule)  # type: ignore[call-overload]
                 .where(col(RecertSchedule.asset_id).in_(ids), col(RecertSchedule.next_due_at) > now)
                 .values(next_due_at=now).execution_options(synchronize_session=False))


def _schedule_provisionally(session: Session, asset_id: int, due: datetime) -> None:
    insert_if_absent(session, RecertSchedule.__table__,  # type: ignore[arg-type]
                     {"asset_id": asset_id, "next_due_at": due, "honoured_seq": 0, "provisional": True})
