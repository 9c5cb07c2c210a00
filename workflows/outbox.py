"""The transactional outbox: Slack messages written with the change that implies them."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from workflows.models import OutboxMessage

MAX_BACKOFF = timedelta(minutes=30)
_ADDED = "steward.outbox.added"


class OutboxMethod(StrEnum):
    """How a row is delivered."""

    POST = "post"            # chat.postMessage to `channel`
    DM = "dm"                # chat.postMessage to the DM with `user`
    EPHEMERAL = "ephemeral"  # chat.postEphemeral to `user` in `channel`, falling back to a DM
    UPDATE = "update"        # chat.update of the message row `updates_id` was sent as, redrawn from state


def add_message(
    *, session: Session, method: OutboxMethod, payload: dict[str, Any], now: datetime,
    channel: str = "", user: str = "", topic: str = "", updates_id: int | None = None,
) -> OutboxMessage:
    """Queue a message in the caller's transaction; it is sent after commit."""
    row = OutboxMessage(
        created_at=now, method=method, channel=channel, user=user, payload=payload, next_attempt_at=now,
        topic=topic, updates_id=updates_id,
    )
    session.add(row)
    session.flush()
    session.info.setdefault(_ADDED, []).append(row.id)
    return row


def added_message_ids(session: Session) -> list[int]:
    """Ids of the rows this session queued, for the edge to enqueue once the transaction commits."""
    return list(session.info.get(_ADDED, []))


def due_message_ids(*, session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Ids of unsent rows whose next attempt is due, oldest first."""
    rows = session.exec(
        select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None), OutboxMessage.next_attempt_at <= now)
        .order_by(col(OutboxMessage.next_attempt_at)).limit(limit)
    ).all()
    return list(rows)


def queue_due_message_ids(*, session: Session, now: datetime, requeue_after: timedelta,
                          limit: int = 500) -> list[int]:
    """Ids of due rows not already waiting in the broker, oldest first, marked as queued as of `now`."""
    # Without the mark every sweep queued the whole backlog again: when the workers fell behind, the
    # broker's queue filled with repeats faster than they could drain it, and new messages waited
    # behind them without end. A queued row is skipped until a worker claims it (which clears the
    # mark) or until `requeue_after` says its task was lost (a broker restart, a killed worker).
    rows = session.exec(
        select(OutboxMessage.id).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.next_attempt_at <= now,
            or_(col(OutboxMessage.queued_at).is_(None), col(OutboxMessage.queued_at) <= now - requeue_after))
        .order_by(col(OutboxMessage.next_attempt_at)).limit(limit)
        .with_for_update(skip_locked=True)  # two sweeps at once split the rows rather than both queue them
    ).all()
    ids = list(rows)
    if ids:
        session.exec(update(OutboxMessage).where(col(OutboxMessage.id).in_(ids)).values(queued_at=now)
                     .execution_options(synchronize_session=False))
    return ids


def unqueue_messages(*, session: Session, message_ids: list[int]) -> None:
    """Clear the sweep's mark on rows a task took but left unsent, so the next sweep queues them again."""
    if message_ids:
        session.exec(update(OutboxMessage).where(col(OutboxMessage.id).in_(message_ids)).values(queued_at=None)
                     .execution_options(synchronize_session=False))


def mark_sent(*, session: Session, message: OutboxMessage, channel: str, ts: str, now: datetime) -> None:
    """Record Slack's answer so later updates redraw the same message."""
    message.sent_at, message.sent_channel, message.sent_ts = now, channel, ts
    message.next_attempt_at = None
    message.attempts += 1
    session.add(message)


def mark_failed(
    *, session: Session, message: OutboxMessage, error: str, now: datetime, retry_after: float | None = None
) -> None:
    """Record a failed attempt and push the next one back (honouring Retry-After)."""
    message.attempts += 1
    backoff = timedelta(seconds=retry_after) if retry_after else min(
        timedelta(seconds=2 ** min(message.attempts, 11)), MAX_BACKOFF
    )
    message.next_attempt_at = now + backoff
    message.last_error = error[:500]
    session.add(message)
