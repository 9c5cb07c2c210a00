"""The sweep's queued marks (workflows/queued.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from workflows import queued
from workflows.db import transaction
from workflows.models import QueuedWork

WINDOW = timedelta(minutes=5)


def marks(engine) -> dict[tuple[str, int], object]:
    with transaction(engine) as session:
        return {(row.kind, row.item_id): row.queued_at for row in session.exec(select(QueuedWork)).all()}


def test_items_are_marked_once_and_a_repeat_in_one_sweep_counts_once(engine, now):
    with transaction(engine) as session:
        fresh = queued.mark_unqueued(session=session, items=[("reminder", 1), ("grant_expiry", 1), ("reminder", 1)],
                                     now=now, requeue_after=WINDOW)

    assert fresh == [("reminder", 1), ("grant_expiry", 1)]
    assert marks(engine) == {("reminder", 1): now, ("grant_expiry", 1): now}


def test_a_marked_item_is_left_out_until_unmarked_or_its_mark_is_stale(engine, now):
    later = now + timedelta(minutes=1)
    with transaction(engine) as session:
        queued.mark_unqueued(session=session, items=[("reminder", 1), ("reminder", 2)], now=now,
                             requeue_after=WINDOW)
    with transaction(engine) as session:
        queued.unmark(session=session, kind="reminder", item_id=2)
        fresh = queued.mark_unqueued(session=session, items=[("reminder", 1), ("reminder", 2), ("reminder", 3)],
                                     now=later, requeue_after=WINDOW)

    assert fresh == [("reminder", 2), ("reminder", 3)]
    with transaction(engine) as session:
        stale = queued.mark_unqueued(session=session, items=[("reminder", 1)], now=now + WINDOW,
                                     requeue_after=WINDOW)
    assert stale == [("reminder", 1)]
    assert marks(engine) == {("reminder", 1): now + WINDOW, ("reminder", 2): later, ("reminder", 3): later}


def test_unmark_all_takes_the_marks_off_what_the_broker_refused(engine, now):
    with transaction(engine) as session:
        queued.mark_unqueued(session=session, items=[("reminder", 1), ("reminder", 2)], now=now,
                             requeue_after=WINDOW)
    with transaction(engine) as session:
        queued.unmark_all(session=session, items=[("reminder", 2)])

    assert set(marks(engine)) == {("reminder", 1)}
