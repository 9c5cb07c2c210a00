"""Operational figures read at each metrics scrape: the outbox backlog, pending requests, overdue reviews.

Each figure is one aggregate over an indexed column (outboxmessage.next_attempt_at,
access_request.status, asset.next_review_due), so a scrape every few seconds stays cheap however
large the history grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from workflows.enums import AssetStatus, RequestStatus
from workflows.models import AccessRequest, Asset, OutboxMessage


@dataclass(frozen=True)
class Stats:
    """The figures as of one moment."""

    outbox_backlog: int               # messages waiting to be sent, due now or backing off
    outbox_oldest_age_seconds: float  # how long the oldest of them has waited (0 when none wait)
    pending_requests: int             # access requests waiting for a decision
    overdue_reviews: int              # live assets whose review date has passed


def read_stats(*, session: Session, now: datetime) -> Stats:
    """The outbox backlog and its oldest age, pending requests and overdue reviews as of `now`."""
    # A row waits while it has a next attempt; a sent row, or one given up on, has none.
    backlog, oldest = session.exec(
        select(func.count(), func.min(OutboxMessage.created_at))
        .where(col(OutboxMessage.next_attempt_at).is_not(None), col(OutboxMessage.sent_at).is_(None))
    ).one()
    pending = session.exec(select(func.count()).select_from(AccessRequest)
                           .where(AccessRequest.status == RequestStatus.PENDING)).one()
    # As workflows.reviews sees it: a live asset is due on `next_review_due`, overdue once that has passed.
    overdue = session.exec(select(func.count()).select_from(Asset)
                           .where(col(Asset.next_review_due).is_not(None), Asset.next_review_due < now,
                                  Asset.status != AssetStatus.RETIRED)).one()
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return Stats(outbox_backlog=backlog, outbox_oldest_age_seconds=age, pending_requests=pending,
                 overdue_reviews=overdue)
