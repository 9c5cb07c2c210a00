"""The leader lease and the scheduler's tick: one leader at a time, decided by the database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlmodel import select

from workers.scheduler import JOB_ID, LEASE_NAME, build_scheduler, default_lease_ttl, run_scheduler, tick
from workflows.db import transaction
from workflows.locks import acquire_lease, release_lease
from workflows.models import LeaderLock

TTL = timedelta(minutes=3)
MINUTE = timedelta(minutes=1)


def acquire(engine, holder, now, *, name="lease", ttl=TTL) -> bool:
    with transaction(engine) as session:
        return acquire_lease(session=session, name=name, holder=holder, now=now, ttl=ttl)


def release(engine, holder, *, name="lease") -> bool:
    with transaction(engine) as session:
        return release_lease(session=session, name=name, holder=holder)


def lease(engine, name="lease") -> LeaderLock | None:
    with transaction(engine) as session:
        return session.exec(select(LeaderLock).where(LeaderLock.name == name)).one_or_none()


# -- the lease -------------------------------------------------------------------


def test_the_first_comer_takes_the_lease(engine, now):
    assert acquire(engine, "a", now) is True

    stored = lease(engine)
    assert (stored.holder, stored.expires_at) == ("a", now + TTL)


def test_the_holder_renews_and_others_are_refused(engine, now):
    acquire(engine, "a", now)

    assert acquire(engine, "b", now + MINUTE) is False
    assert acquire(engine, "a", now + MINUTE) is True

    assert lease(engine).expires_at == now + MINUTE + TTL
    assert lease(engine).holder == "a"


def test_another_takes_over_only_after_expiry(engine, now):
    acquire(engine, "a", now)

    assert acquire(engine, "b", now + TTL) is False  # expiring, not yet expired
    assert acquire(engine, "b", now + TTL + timedelta(seconds=1)) is True
    assert acquire(engine, "a", now + TTL + timedelta(seconds=2)) is False

    assert lease(engine).holder == "b"


def test_the_holder_may_renew_a_lapsed_lease_nobody_took(engine, now):
    acquire(engine, "a", now)

    assert acquire(engine, "a", now + 2 * TTL) is True
    assert lease(engine).expires_at == now + 3 * TTL


def test_leases_with_different_names_are_independent(engine, now):
    assert acquire(engine, "a", now, name="one") is True
    assert acquire(engine, "b", now, name="two") is True
    assert acquire(engine, "b", now, name="one") is False


def test_only_the_holder_can_release(engine, now):
    acquire(engine, "a", now)

    assert release(engine, "b") is False
    assert lease(engine).holder == "a"
    assert release(engine, "a") is True
    assert lease(engine) is None
    assert acquire(engine, "b", now) is True


def test_a_refused_insert_leaves_the_callers_transaction_usable(engine, now):
    acquire(engine, "a", now)

    with transaction(engine) as session:
        refused = acquire_lease(session=session, name="lease", holder="b", now=now, ttl=TTL)
        taken = acquire_lease(session=session, name="other", holder="b", now=now, ttl=TTL)

    assert (refused, taken) == (False, True)
    assert lease(engine, "other").holder == "b"


def test_freezegun_time_works_as_now(engine):
    with freeze_time("2026-03-02 09:00:00+00:00") as frozen:
        assert acquire(engine, "a", datetime.now(UTC)) is True
        frozen.tick(TTL + timedelta(seconds=1))
        assert acquire(engine, "b", datetime.now(UTC)) is True


@pytest.mark.parametrize("seeded", [False, True], ids=["absent", "expired"])
def test_racing_threads_elect_exactly_one(engine, now, seeded):
    if seeded:
        acquire(engine, "old", now - 2 * TTL)
    racers = 8
    start = threading.Barrier(racers)

    def race(i: int) -> bool:
        start.wait()
        return acquire(engine, f"racer-{i}", now)

    with ThreadPoolExecutor(max_workers=racers) as pool:
        won = list(pool.map(race, range(racers)))

    assert won.count(True) == 1
    assert lease(engine).holder == f"racer-{won.index(True)}"


# -- the tick ---------------------------------------------------------------------


class Copy:
    """One scheduler process: its name and how many sweeps it enqueued."""

    def __init__(self, engine, holder: str) -> None:
        self.engine, self.holder, self.sweeps = engine, holder, 0

    def tick(self, now) -> bool:
        return tick(engine=self.engine, holder=self.holder, now=now, enqueue_sweep=self._enqueue,
                    ttl=default_lease_ttl(60))

    def _enqueue(self) -> None:
        self.sweeps += 1


def test_two_copies_ticking_together_sweep_once_per_tick(engine, now):
    a, b = Copy(engine, "host-a"), Copy(engine, "host-b")

    for minute in range(10):
        at = now + minute * MINUTE
        # Alternate who ticks first: the lease, not the order, decides.
        first, second = (a, b) if minute % 2 == 0 else (b, a)
        swept = [first.tick(at), second.tick(at)]
        assert swept.count(True) == 1, minute

    assert (a.sweeps, b.sweeps) == (10, 0)


def test_the_other_copy_takes_over_when_the_leader_stops(engine, now):
    a, b = Copy(engine, "host-a"), Copy(engine, "host-b")
    ttl = default_lease_ttl(60)
    a.tick(now)

    takeover = None
    for minute in range(1, 10):  # host-a has died: only host-b ticks
        at = now + minute * MINUTE
        if b.tick(at):
            takeover = at
            break

    assert takeover == now + ttl + MINUTE  # the first tick after the lease expired
    assert b.sweeps == 1
    assert a.tick(takeover + MINUTE) is False  # a revived host-a stays idle


def test_a_tick_without_the_broker_keeps_the_lease(engine, now):
    def broker_down():
        raise BrokerUnavailable("Error 111 connecting")

    swept = tick(engine=engine, holder="host-a", now=now, enqueue_sweep=broker_down, ttl=TTL)

    assert swept is False
    assert lease(engine, LEASE_NAME).holder == "host-a"


# -- the scheduler process ----------------------------------------------------------------


def test_the_job_coalesces_missed_runs_and_never_overlaps(sqlite_engine, now):
    scheduler = build_scheduler(engine=sqlite_engine, enqueue_sweep=lambda: None, holder="h",
                                clock=lambda: now, interval=60)

    job = scheduler.get_job(JOB_ID)

    assert job.coalesce is True
    assert job.max_instances == 1
    assert job.misfire_grace_time == 60
    assert job.trigger.interval == timedelta(seconds=60)


def test_run_scheduler_sweeps_at_once_and_releases_the_lease_on_stop(sqlite_engine, now):
    stop = threading.Event()
    held_while_running = []

    def enqueue_sweep():
        held_while_running.append(lease(sqlite_engine, LEASE_NAME).holder)
        stop.set()

    run_scheduler(engine=sqlite_engine, enqueue_sweep=enqueue_sweep, holder="host-a", clock=lambda: now,
                  interval=3600, stop=stop)

    assert held_while_running == ["host-a"]
    assert lease(sqlite_engine, LEASE_NAME) is None
