"""The periodic sweep (`workers.tasks.sweep_once`) against a large inventory: nothing due, and 1% due.

Seeds assets, a decision log with a valid hash chain, and grants (each with its approved request), all
in bulk, every asset already scheduled for recertification: the steady state of a large organisation.
It times the sweep with nothing due as the grants grow (the curve should be flat: every question the
sweep asks is read through an index), then makes 1% of the grants expire and times the sweeps that
enqueue all of them. Enqueuers only count; the floor is one indexed `SELECT … LIMIT 1` on the same
database, in the same kind of transaction.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine, delete, text, update
from sqlmodel import col, select

from bench.common import Run, bulk_insert, figure, fresh_database, percentile, timings
from bench.export_memory import fill_to
from bench.inventory_data import OWNERS, START, seed_assets
from workers.celery_app import WorkerContext
from workers.tasks import DueKind, sweep_once
from workflows.db import transaction
from workflows.enums import AccessLevel, GrantStatus, RequestStatus
from workflows.models import AccessRequest, Grant, QueuedWork, RecertSchedule
from workflows.policy import load_policy
from workflows.settings import Settings

NAME = "sweep"
NOW = START + timedelta(days=400)
GOAL_IDLE = "< 50 ms, flat"
GOAL_DUE = "all enqueued < 2 s"


def _request_rows(first: int, last: int, assets: int) -> Any:
    for i in range(first, last + 1):
        at = NOW - timedelta(days=1 + i % 365)
        yield {"id": i, "asset_id": 1 + i % assets, "requester_id": OWNERS[i % len(OWNERS)],
               "level": AccessLevel.READ.value, "duration_hours": 24 * 400, "justification": "benchmark",
               "emergency": False, "status": RequestStatus.APPROVED.value, "renews_grant_id": None, "created_at": at,
               "resolved_at": at, "resolved_by": OWNERS[0], "resolution_note": "", "reminders_sent": 0}


def _grant_rows(first: int, last: int, assets: int) -> Any:
    for i in range(first, last + 1):
        at = NOW - timedelta(days=1 + i % 365)
        yield {"id": i, "request_id": i, "asset_id": 1 + i % assets, "grantee_id": OWNERS[i % len(OWNERS)],
               "level": AccessLevel.READ.value, "emergency": False, "status": GrantStatus.ACTIVE.value,
               "granted_at": at, "expires_at": NOW + timedelta(days=30, seconds=i), "ended_by": "", "end_reason": ""}


def grow_grants(engine: Engine, first: int, last: int, assets: int) -> float:
    """Add grants first..last with their approved requests; return seconds."""
    seconds = bulk_insert(engine, AccessRequest.__table__, _request_rows(first, last, assets))
    seconds += bulk_insert(engine, Grant.__table__, _grant_rows(first, last, assets))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in ("access_request", "access_grant"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})"))
            conn.execute(text("ANALYZE"))
    return seconds


def _schedule_all(engine: Engine, assets: int) -> None:
    bulk_insert(engine, RecertSchedule.__table__,
                ({"asset_id": i, "next_due_at": NOW + timedelta(days=60), "honoured_seq": 0}
                 for i in range(1, assets + 1)))


def _context(engine: Engine) -> WorkerContext:
    return WorkerContext(engine=engine, client=None, settings=Settings(), now=lambda: NOW,  # type: ignore[arg-type]
                         policy=load_policy(None))


def _floor(engine: Engine, repeat: int) -> float:
    def probe() -> None:
        with transaction(engine) as session:
            session.exec(select(Grant.id).where(Grant.status == GrantStatus.ACTIVE, Grant.expires_at <= NOW)
                         .limit(1)).first()
    return percentile(timings(probe, repeat), 50)


def _sweep_idle(context: WorkerContext, repeat: int) -> tuple[float, int]:
    enqueued = itertools.count()
    samples = timings(lambda: sweep_once(context=context, enqueue_due=lambda *_: next(enqueued),
                                         enqueue_delivery=lambda *_: next(enqueued),
                                         enqueue_provision=lambda *_: next(enqueued)), repeat)
    return percentile(samples, 50), next(enqueued)


def _ignore(*_: object) -> None:
    """An enqueuer that drops what it is given."""


def _drain(engine: Engine, context: WorkerContext, due: int) -> tuple[float, int, int]:
    """Sweep until every due grant was enqueued once; a stand-in worker expires each batch and removes its
    queued marks between sweeps (not timed), as real workers would. Returns (seconds of sweeping, sweeps, grants enqueued)."""
    seen: set[int] = set()
    seconds, sweeps = 0.0, 0
    while len(seen) < due and sweeps < 10_000:
        batch: list[int] = []

        def collect(kind: str, item_id: int, batch: list[int] = batch) -> None:
            if kind == DueKind.GRANT_EXPIRY:
                batch.append(item_id)

        [took] = timings(partial(sweep_once, context=context, enqueue_due=collect, enqueue_delivery=_ignore,
                                 enqueue_provision=_ignore), 1)
        seconds, sweeps = seconds + took, sweeps + 1
        if not batch:
            break
        seen.update(batch)
        with engine.begin() as conn:
            conn.execute(update(Grant).where(col(Grant.id).in_(batch)).values(status=GrantStatus.EXPIRED))
            # What run_due does with the work: take the sweep's queued marks away.
            conn.execute(delete(QueuedWork).where(QueuedWork.kind == DueKind.GRANT_EXPIRY.value,
                                                  col(QueuedWork.item_id).in_(batch)))
    return seconds, sweeps, len(seen)


def _sweeps(count: int) -> str:
    return f"{count} sweep" if count == 1 else f"{count} sweeps"


def run(run: Run) -> dict[str, Any]:
    """Seed, sweep, print; return the figures."""
    assets = run.pick(500, 10_000, 100_000)
    steps = run.pick((500, 2_000, 5_000), (10_000, 50_000, 100_000), (10_000, 100_000, 1_000_000))
    entries = run.pick(5_000, 100_000, 1_000_000)
    repeat = run.pick(5, 20, 20)
    figures: dict[str, Any] = {"assets": assets, "log_entries": entries, "rows": []}
    for backend in run.backends:
        with fresh_database(backend, run, prefix="sweep") as engine:
            seeded = seed_assets(engine, assets) + fill_to(engine, entries)
            _schedule_all(engine, assets)
            context = _context(engine)
            print(f"sweep on {backend}: {assets:,} assets, {entries:,} log entries ({seeded:.1f} s to seed)")
            print(f"  {'grants':>10} {'seed s':>7} {'floor ms':>9} {'sweep ms':>9} {'ratio':>7} {'enqueued':>9}")
            done, curve = 0, []
            for grants in steps:
                grown = grow_grants(engine, done + 1, grants, assets)
                done = grants
                floor = _floor(engine, repeat)
                idle, enqueued = _sweep_idle(context, repeat)
                curve.append({"grants": grants, "sweep_ms": round(idle * 1000, 3), "floor_ms": round(floor * 1000, 3)})
                print(f"  {grants:>10,} {grown:7.1f} {floor * 1000:9.2f} {idle * 1000:9.2f} {idle / floor:7.1f}"
                      f" {enqueued:>9}")
            figures[f"{backend} curve"] = curve
            figures["rows"].append(figure(f"{backend} idle, {done:,} grants", idle, floor, GOAL_IDLE))
            due = done // 100
            with engine.begin() as conn:
                conn.execute(update(Grant).where(Grant.id <= due).values(expires_at=NOW - timedelta(hours=1)))
            seconds, sweeps, enqueued = _drain(engine, context, due)
            print(f"  1% due ({due:,} grants expire): all {enqueued:,} enqueued by {_sweeps(sweeps)} taking "
                  f"{seconds * 1000:.0f} ms of sweeping in all")
            figures[f"{backend} due"] = {"due": due, "enqueued": enqueued, "sweeps": sweeps,
                                         "sweep_seconds": round(seconds, 3)}
            figures["rows"].append(figure(f"{backend} 1% due ({due:,}), {_sweeps(sweeps)}", seconds, None, GOAL_DUE))
    return figures
