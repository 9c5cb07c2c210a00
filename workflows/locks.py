"""Leader leases on the LeaderLock table: at most one holder per name, decided by the database.

A lease is a row (name, holder, expires_at). Taking, renewing and taking over a lease are
compare-and-set statements whose row count says who won, so two processes racing on SQLite
or PostgreSQL can never both believe they lead. Nothing here reads the clock: callers pass `now`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlmodel import Session

from workflows.db import insert_if_absent
from workflows.models import LeaderLock


def acquire_lease(*, session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take, renew or take over the lease `name` for `holder` until `now + ttl`; True if we hold it."""
    if _renew_or_take_over(session, name=name, holder=holder, now=now, expires_at=now + ttl):
        return True
    return _insert_if_absent(session, name=name, holder=holder, expires_at=now + ttl)


def release_lease(*, session: Session, name: str, holder: str) -> bool:
    """Give up the lease if `holder` still holds it; True if a lease was released."""
    result = session.exec(
        delete(LeaderLock).where(LeaderLock.name == name, LeaderLock.holder == holder)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _renew_or_take_over(
    session: Session, *, name: str, holder: str, now: datetime, expires_at: datetime
) -> bool:
    # One conditional UPDATE: on PostgreSQL a racing writer waits for our row lock and then
    # re-checks the WHERE against our committed row (no longer expired, not theirs), so it
    # matches nothing. On SQLite, BEGIN IMMEDIATE serialises the writers outright.
    result = session.exec(
        update(LeaderLock)
        .where(LeaderLock.name == name, or_(LeaderLock.holder == holder, LeaderLock.expires_at < now))
        .values(holder=holder, expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _insert_if_absent(session: Session, *, name: str, holder: str, expires_at: datetime) -> bool:
    return insert_if_absent(session, LeaderLock.__table__, {"name": name, "holder": holder, "expires_at": expires_at})
