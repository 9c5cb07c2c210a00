"""The scheduler process: once a minute, the leader (and only the leader) enqueues `sweep`.

Any number of copies may run; a lease in the database (workflows.locks) picks the one that
enqueues, and the others tick idly, ready to take over when the leader stops renewing. The
scheduler only enqueues: deadlines live in the database and the sweep decides what is due.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, select
from sqlmodel import Session

from workflows.db import DatabaseUnavailable, transaction
from workflows.locks import acquire_lease, release_lease
from workflows.models import LeaderLock

logger = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
JOB_ID = "steward-sweep"
DEFAULT_INTERVAL = 60


def tick(*, engine: Engine, holder: str, now: datetime, enqueue_sweep: Callable[[], object],
         ttl: timedelta) -> bool:
    """Take or renew the lease; if we lead, enqueue the sweep. True if it was enqueued."""
    try:
        with transaction(engine) as session:
            leader = acquire_lease(session=session, name=LEASE_NAME, holder=holder, now=now, ttl=ttl)
    except DatabaseUnavailable:
        logger.warning("Database unreachable; skipping this tick")
        return False
    if not leader:
        return False
    try:
        enqueue_sweep()
    except Exception as exc:  # noqa: BLE001 - a broker outage must not stop the scheduler
        logger.warning("Could not enqueue the sweep (%s); trying again next tick", type(exc).__name__)
        return False
    return True


def release(*, engine: Engine, holder: str) -> bool:
    """Give up the scheduler lease if `holder` holds it, so another copy can lead at once."""
    with transaction(engine) as session:
        return release_lease(session=session, name=LEASE_NAME, holder=holder)


def holds_lease(*, engine: Engine, holder: str, now: datetime) -> bool:
    """Whether `holder` holds the scheduler lease at `now` (read-only, for health reports)."""
    with Session(engine) as session:
        found = session.execute(select(LeaderLock.name).where(
            LeaderLock.name == LEASE_NAME, LeaderLock.holder == holder, LeaderLock.expires_at > now)).first()
    return found is not None


def build_scheduler(*, engine: Engine, enqueue_sweep: Callable[[], object], holder: str,
                    clock: Callable[[], datetime], interval: int = DEFAULT_INTERVAL,
                    lease_ttl: timedelta | None = None) -> BackgroundScheduler:
    """An (unstarted) APScheduler whose one job ticks every `interval` seconds, first at once."""
    ttl = lease_ttl or default_lease_ttl(interval)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        lambda: tick(engine=engine, holder=holder, now=clock(), enqueue_sweep=enqueue_sweep, ttl=ttl),
        "interval", seconds=interval, id=JOB_ID, next_run_time=datetime.now(UTC),
        # After downtime (a suspended host, a stalled process) the missed runs collapse into one,
        # and that one still runs however late it is within an interval.
        coalesce=True, max_instances=1, misfire_grace_time=interval,
    )
    return scheduler


def run_scheduler(*, engine: Engine, enqueue_sweep: Callable[[], object], holder: str,
                  clock: Callable[[], datetime], interval: int = DEFAULT_INTERVAL,
                  lease_ttl: timedelta | None = None, stop: threading.Event | None = None) -> None:
    """Tick until SIGINT/SIGTERM (or `stop` is set), then release the lease."""
    stop = stop or threading.Event()
    scheduler = build_scheduler(engine=engine, enqueue_sweep=enqueue_sweep, holder=holder, clock=clock,
                                interval=interval, lease_ttl=lease_ttl)
    with _stop_on_signals(stop):
        scheduler.start()
        logger.info("Scheduler %s started; ticking every %s s", holder, interval)
        try:
            stop.wait()
        finally:
            # Wait for a running tick, so it cannot renew the lease after we release it.
            scheduler.shutdown(wait=True)
            release(engine=engine, holder=holder)
            logger.info("Scheduler %s stopped and released the lease", holder)


def default_lease_ttl(interval: int) -> timedelta:
    """Three intervals: a leader survives two slow ticks, and a dead one is replaced within four."""
    return timedelta(seconds=3 * interval)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    # Signal handlers can only be installed from the main thread; elsewhere `stop` is the way out.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
