"""Marks for due work the sweep has handed to the broker, so that a backlog is queued once, not at every sweep.

The sweep finds due work by reading the database, and a task does nothing if its item is no longer
due, so queuing an item twice was always safe. It was not cheap: when the workers fell behind by more
than a sweep interval, every sweep queued the whole backlog again, the queue grew faster than they
drained it, and new work waited behind the repeats without end. Now the sweep marks what it queues,
the task removes its mark in the transaction that does the work, and a mark older than the requeue
window counts as a lost task (a broker restart, a killed worker), so the item is queued again.
(Outbox rows carry their own mark, `OutboxMessage.queued_at`, cleared by the delivery claim.)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, text
from sqlmodel import Session, col, select

from workflows.db import insert_ignoring_duplicates
from workflows.models import QueuedWork
from workflows.types import UtcDateTime

Item = tuple[str, int]
_MARK_ALL_POSTGRES = text(
    "INSERT INTO queued_work (kind, item_id, queued_at) "
    "SELECT unnest(CAST(:kinds AS varchar[])), unnest(CAST(:ids AS integer[])), :now "
    "ON CONFLICT DO NOTHING").bindparams(bindparam("now", type_=UtcDateTime()))


def mark_unqueued(*, session: Session, items: Iterable[Item], now: datetime, requeue_after: timedelta) -> list[Item]:
    """Of `items` (kind, id), those not already waiting in the broker, in order, now marked as queued."""
    session.exec(delete(QueuedWork).where(col(QueuedWork.queued_at) <= now - requeue_after))
    waiting = set(session.exec(select(QueuedWork.kind, QueuedWork.item_id)).all())
    fresh = [item for item in dict.fromkeys(items) if item not in waiting]
    # A sweep running beside this one may mark the same items: the first mark stands.
    if fresh and session.get_bind().dialect.name == "postgresql":
        # Two arrays in one statement: a day of 10,000 expiries is marked in a round trip, not 10,000.
        session.exec(_MARK_ALL_POSTGRES.bindparams(kinds=[kind for kind, _ in fresh],
                                                    ids=[item_id for _, item_id in fresh], now=now))
    else:
        insert_ignoring_duplicates(session, QueuedWork.__table__,
                                   [{"kind": kind, "item_id": item_id, "queued_at": now} for kind, item_id in fresh])
    return fresh


def unmark(*, session: Session, kind: str, item_id: int) -> None:
    """The task for (kind, item_id) has reached a worker: a later sweep may queue the item again."""
    session.exec(delete(QueuedWork).where(QueuedWork.kind == kind, QueuedWork.item_id == item_id))


def unmark_all(*, session: Session, items: list[Item]) -> None:
    """Take the marks off items the sweep marked but could not hand to the broker."""
    for kind, item_id in items:
        unmark(session=session, kind=kind, item_id=item_id)
