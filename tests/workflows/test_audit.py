"""The decision log: every change appends one entry, and the hash chain exposes tampering."""

from __future__ import annotations

import json
import threading
from datetime import timedelta, timezone

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from tests.factories import classify_system, edit_asset, make_asset, retire
from workflows import audit
from workflows.db import transaction
from workflows.models import DecisionLogEntry


def _entries(engine) -> list[DecisionLogEntry]:
    with transaction(engine) as session:
        return list(session.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.seq)).all())


def _verify(engine, **kw) -> audit.ChainReport:
    with transaction(engine) as session:
        return audit.verify_chain(session=session, **kw)


def _append(engine, now, n: int, *, actor: str = "U0OWNER1") -> None:
    for i in range(n):
        with transaction(engine) as session:
            audit.append_entry(session=session, actor=actor, action="test.appended", subject_type="test",
                               subject_id=i, subject_slug=f"thing-{i}", before={"n": i}, after={"n": i + 1},
                               now=now + timedelta(seconds=i))


def _tamper(engine, sql: str, **params) -> None:
    """Change the log behind the services' back, as someone with database access could."""
    with transaction(engine) as session:
        if engine.dialect.name == "postgresql":
            # The log may be protected by a trigger refusing UPDATE and DELETE; an attacker with
            # superuser rights can switch triggers off for their own transaction, so do the same.
            session.execute(text("SET LOCAL session_replication_role = replica"))
        session.execute(text(sql), params)


def test_every_change_appends_exactly_one_entry(engine, policy, now):
    steps = []
    data = make_asset(engine, policy=policy, now=now, name="Applicants")
    steps.append(("asset.registered", data.slug))
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Hiring assistant")
    steps.append(("asset.registered", system.slug))
    edit_asset(engine, system, policy=policy, now=now, lineage={"uses": [data.id]})
    steps.append(("asset.updated", system.slug))
    classify_system(engine, system, "high", policy=policy, now=now)
    steps.append(("asset.classified", system.slug))
    retire(engine, data, policy=policy, now=now)
    steps.append(("asset.retired", data.slug))
    entries = _entries(engine)
    assert [(e.action, e.subject_slug) for e in entries] == steps
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    # Reclassifying the system changed the data's effective tier too, but that is one change: one entry.
    assert _verify(engine).ok


def test_an_intact_chain_verifies_with_its_count_and_head(engine, now):
    report = _verify(engine)
    assert (report.ok, report.count, report.head_hash) == (True, 0, audit.GENESIS_HASH)
    _append(engine, now, 5)
    entries = _entries(engine)
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    report = _verify(engine)
    assert report.ok and report.first_bad_seq is None and report.problem == ""
    assert report.count == 5
    assert report.head_hash == entries[-1].hash
    assert _verify(engine, batch_size=2) == report


def test_the_hash_covers_the_entry_and_its_predecessor(now):
    entry = DecisionLogEntry(seq=1, at=now, actor="U1", action="a", subject_type="asset", subject_id=1,
                             subject_slug="x", before=None, after={"b": 1, "a": [1, 2]}, prev_hash="", hash="")
    first = audit.compute_hash(audit.GENESIS_HASH, entry)
    assert len(first) == 64
    assert audit.compute_hash("f" * 64, entry) != first
    entry.after = {"a": [1, 2], "b": 1}
    assert audit.compute_hash(audit.GENESIS_HASH, entry) == first, "key order does not matter"
    entry.after = {"a": [1, 2], "b": 2}
    assert audit.compute_hash(audit.GENESIS_HASH, entry) != first


def test_a_time_in_another_zone_still_verifies(engine, now):
    paris = timezone(timedelta(hours=1))
    with transaction(engine) as session:
        audit.append_entry(session=session, actor="U0OWNER1", action="test.appended", subject_type="test",
                           subject_id=None, now=now.astimezone(paris))
    _append(engine, now, 1)
    report = _verify(engine)
    assert report.ok, report.problem
    assert _entries(engine)[0].at == now


def test_values_are_stored_as_they_were_hashed(engine, now):
    with transaction(engine) as session:
        audit.append_entry(session=session, actor="U0OWNER1", action="test.appended", subject_type="test",
                           subject_id=7, after={"when": now, "ids": (1, 2), "ünï": "cödé"}, now=now)
    entry = _entries(engine)[0]
    assert entry.after == {"when": str(now), "ids": [1, 2], "ünï": "cödé"}
    assert _verify(engine).ok


def test_a_modified_entry_is_reported_with_its_seq(engine, now):
    _append(engine, now, 4)
    head = _entries(engine)[-1].hash
    after = json.dumps({"n": 999})
    if engine.dialect.name == "postgresql":
        _tamper(engine, "UPDATE decision_log SET after = CAST(:after AS JSON) WHERE seq = 2", after=after)
    else:
        _tamper(engine, "UPDATE decision_log SET after = :after WHERE seq = 2", after=after)
    assert _entries(engine)[1].after == {"n": 999}, "the tampering took effect"
    report = _verify(engine)
    assert not report.ok
    assert report.first_bad_seq == 2
    assert "modified" in report.problem
    assert report.count == 1, "only the entries before the bad one are vouched for"
    assert report.head_hash != head


def test_a_modified_entry_with_a_recomputed_hash_breaks_the_next_link(engine, now):
    _append(engine, now, 4)
    with transaction(engine) as session:
        entry = session.get(DecisionLogEntry, 2)
        entry.actor = "U0MALLORY"
        forged = audit.compute_hash(entry.prev_hash, entry)
        session.expunge(entry)
    _tamper(engine, "UPDATE decision_log SET actor = 'U0MALLORY', hash = :hash WHERE seq = 2", hash=forged)
    report = _verify(engine)
    assert report.first_bad_seq == 3
    assert "previous hash" in report.problem


def test_a_deleted_middle_entry_is_reported(engine, now):
    _append(engine, now, 5)
    _tamper(engine, "DELETE FROM decision_log WHERE seq = 3")
    assert [e.seq for e in _entries(engine)] == [1, 2, 4, 5]
    report = _verify(engine)
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "expected entry 3" in report.problem
    assert report.count == 2


def test_a_deleted_first_entry_is_reported(engine, now):
    _append(engine, now, 3)
    _tamper(engine, "DELETE FROM decision_log WHERE seq = 1")
    report = _verify(engine)
    assert (report.ok, report.first_bad_seq, report.count) == (False, 2, 0)


def test_appends_after_a_rolled_back_transaction_leave_no_gap(engine, now):
    _append(engine, now, 2)
    with pytest.raises(RuntimeError), transaction(engine) as session:
        audit.append_entry(session=session, actor="U0OWNER1", action="test.lost", subject_type="test",
                           subject_id=None, now=now)
        raise RuntimeError("the change failed after logging")
    _append(engine, now, 1)
    assert [(e.seq, e.action) for e in _entries(engine)] == [
        (1, "test.appended"), (2, "test.appended"), (3, "test.appended")]
    assert _verify(engine).ok


def test_concurrent_appends_never_fork_the_chain(engine, now):
    threads, per_thread = 8, 5
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(per_thread):
                with Session(engine, expire_on_commit=False) as session, session.begin():
                    audit.append_entry(session=session, actor=f"U0WORKER{worker}", action="test.concurrent",
                                       subject_type="test", subject_id=worker, after={"i": i}, now=now)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in pool)
    assert errors == []
    entries = _entries(engine)
    assert [e.seq for e in entries] == list(range(1, threads * per_thread + 1))
    assert len({e.prev_hash for e in entries}) == len(entries), "no two entries share a predecessor"
    report = _verify(engine)
    assert report.ok, report.problem
    assert report.count == threads * per_thread
