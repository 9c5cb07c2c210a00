"""The decision log: every change appends one entry, and the hash chain exposes tampering."""

from __future__ import annotations

import json
import threading
from datetime import timedelta, timezone

import pytest
from sqlalchemy import insert, text
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


def test_a_modified_entry_with_a_recomputed_hash_is_named_by_the_next_link(engine, now):
    _append(engine, now, 4)
    with transaction(engine) as session:
        entry = session.get(DecisionLogEntry, 2)
        entry.actor = "U0MALLORY"
        forged = audit.compute_hash(entry.prev_hash, entry)
        session.expunge(entry)
    _tamper(engine, "UPDATE decision_log SET actor = 'U0MALLORY', hash = :hash WHERE seq = 2", hash=forged)
    report = _verify(engine)
    # Entry 2 checks out on its own; entry 3 still records entry 2's original hash, which gives it away.
    assert (report.first_bad_seq, report.count) == (2, 1)
    assert "modified" in report.problem and "recomputed" in report.problem
    assert report.head_hash == _entries(engine)[0].hash


@pytest.mark.parametrize("batch_size", [2, 5000])
def test_a_deleted_middle_entry_is_reported(engine, now, batch_size):
    _append(engine, now, 5)
    _tamper(engine, "DELETE FROM decision_log WHERE seq = 3")
    assert [e.seq for e in _entries(engine)] == [1, 2, 4, 5]
    report = _verify(engine, batch_size=batch_size)
    assert (report.ok, report.first_bad_seq, report.count) == (False, 3, 2)
    assert "missing" in report.problem and "entry 3 deleted" in report.problem


def test_a_deleted_first_entry_is_reported(engine, now):
    _append(engine, now, 3)
    _tamper(engine, "DELETE FROM decision_log WHERE seq = 1")
    report = _verify(engine)
    assert (report.ok, report.first_bad_seq, report.count, report.head_hash) == (False, 1, 0, audit.GENESIS_HASH)
    assert "starts at entry 2" in report.problem


def test_a_deletion_hidden_by_renumbering_is_reported(engine, now):
    _append(engine, now, 5)
    _tamper(engine, "DELETE FROM decision_log WHERE seq = 3")
    _shift(engine, from_seq=4, by=-1)
    assert [e.seq for e in _entries(engine)] == [1, 2, 3, 4]
    report = _verify(engine)
    assert (report.first_bad_seq, report.count) == (3, 2)
    assert "renumbered" in report.problem


def test_deleting_the_last_entries_is_invisible_to_the_chain_alone(engine, now):
    # Truncation leaves a shorter chain that is intact: only an anchor (test_anchors.py) shows it.
    _append(engine, now, 5)
    head = _entries(engine)[2].hash
    _tamper(engine, "DELETE FROM decision_log WHERE seq > 3")
    report = _verify(engine)
    assert (report.ok, report.count, report.head_hash) == (True, 3, head)


@pytest.mark.parametrize("batch_size", [2, 5000])
def test_a_forged_entry_inserted_in_the_middle_is_named(engine, now, batch_size):
    _append(engine, now, 5)
    entries = _entries(engine)
    _shift(engine, from_seq=3, by=1)
    # A well-made forgery: it links to entry 2 and hashes correctly; only entry 4 (the old 3) betrays it.
    _forge(engine, seq=3, prev_hash=entries[1].hash, at=now)
    assert [e.seq for e in _entries(engine)] == [1, 2, 3, 4, 5, 6]
    report = _verify(engine, batch_size=batch_size)
    assert (report.first_bad_seq, report.count, report.head_hash) == (3, 2, entries[1].hash)
    assert "inserted" in report.problem and "entry 4 is chained to entry 2" in report.problem


def test_a_forged_entry_appended_with_a_wrong_hash_is_named(engine, now):
    _append(engine, now, 3)
    _forge(engine, seq=4, prev_hash=_entries(engine)[-1].hash, at=now, hash="f" * 64)
    report = _verify(engine)
    assert (report.first_bad_seq, report.count) == (4, 3)
    assert "modified" in report.problem


def test_a_forged_entry_before_the_first_is_named(engine, now):
    _append(engine, now, 2)
    _forge(engine, seq=0, prev_hash=audit.GENESIS_HASH, at=now)
    report = _verify(engine)
    assert (report.first_bad_seq, report.count) == (0, 0)
    assert "inserted" in report.problem


def test_a_forged_chain_put_in_front_of_the_real_one_is_named(engine, now):
    _append(engine, now, 3)
    _shift(engine, from_seq=1, by=1)
    _forge(engine, seq=1, prev_hash=audit.GENESIS_HASH, at=now)
    report = _verify(engine)
    assert (report.first_bad_seq, report.count) == (1, 0)
    assert "inserted before the real first entry" in report.problem


def test_a_first_entry_that_does_not_start_from_genesis_is_named(engine, now):
    _append(engine, now, 3)
    _tamper(engine, "UPDATE decision_log SET prev_hash = :prev WHERE seq = 1", prev="e" * 64)
    report = _verify(engine)
    assert (report.first_bad_seq, report.count) == (1, 0)
    assert "genesis" in report.problem


@pytest.mark.parametrize(("a", "b"), [(2, 4), (3, 4), (1, 5)])
@pytest.mark.parametrize("batch_size", [2, 5000])
def test_swapped_entries_are_reported_as_reordered(engine, now, a, b, batch_size):
    _append(engine, now, 5)
    _swap(engine, a, b)
    assert [e.seq for e in _entries(engine)] == [1, 2, 3, 4, 5]
    report = _verify(engine, batch_size=batch_size)
    assert (report.first_bad_seq, report.count) == (a, a - 1)
    if a > 1:
        assert "out of order" in report.problem and "reordered" in report.problem
    else:
        assert "genesis" in report.problem


def _shift(engine, *, from_seq: int, by: int) -> None:
    """Renumber entries from `from_seq` on by `by` (in two steps, so no seq is ever taken twice)."""
    _tamper(engine, "UPDATE decision_log SET seq = -seq WHERE seq >= :s", s=from_seq)
    _tamper(engine, "UPDATE decision_log SET seq = -seq + :by WHERE seq < 0", by=by)


def _swap(engine, a: int, b: int) -> None:
    """Exchange two entries' seq values."""
    _tamper(engine, "UPDATE decision_log SET seq = -1 WHERE seq = :a", a=a)
    _tamper(engine, "UPDATE decision_log SET seq = :a WHERE seq = :b", a=a, b=b)
    _tamper(engine, "UPDATE decision_log SET seq = :b WHERE seq = -1", b=b)


def _forge(engine, *, seq: int, prev_hash: str, at, hash: str | None = None) -> None:
    """Insert an entry behind the services' back, hashed correctly unless `hash` is given."""
    entry = DecisionLogEntry(seq=seq, at=at, actor="U0MALLORY", action="access.approved", subject_type="test",
                             subject_id=None, subject_slug="", before=None, after={"forged": True},
                             prev_hash=prev_hash, hash="")
    entry.hash = hash or audit.compute_hash(prev_hash, entry)
    with transaction(engine) as session:
        session.execute(insert(DecisionLogEntry.__table__).values(
            seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action, subject_type=entry.subject_type,
            subject_id=None, subject_slug="", before=None, after=entry.after, prev_hash=prev_hash,
            hash=entry.hash))


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


def test_entries_join_the_chain_at_commit_in_the_order_they_were_added(engine, now):
    _append(engine, now, 1)
    with transaction(engine) as session:
        first = audit.append_entry(session=session, actor="U0OWNER1", action="test.first", subject_type="test",
                                   subject_id=None, now=now)
        second = audit.append_entry(session=session, actor="U0OWNER1", action="test.second", subject_type="test",
                                    subject_id=None, now=now)
        assert (first.seq, second.seq) == (None, None)  # not chained before the commit
    assert [(first.seq, second.seq), (second.prev_hash, first.prev_hash != "")] == [(2, 3), (first.hash, True)]
    assert [e.action for e in _entries(engine)] == ["test.appended", "test.first", "test.second"]
    assert _verify(engine).ok


def test_an_entry_added_in_a_savepoint_that_rolls_back_is_gone_with_it(engine, now):
    with transaction(engine) as session:
        audit.append_entry(session=session, actor="U0OWNER1", action="test.kept", subject_type="test",
                           subject_id=None, now=now)
        with pytest.raises(RuntimeError), session.begin_nested():
            audit.append_entry(session=session, actor="U0OWNER1", action="test.undone", subject_type="test",
                               subject_id=None, now=now)
            raise RuntimeError("the savepoint's change failed")
    assert [(e.seq, e.action) for e in _entries(engine)] == [(1, "test.kept")]
    assert _verify(engine).ok


def test_an_open_transaction_that_logged_does_not_hold_up_other_writers(pg_engine, now):
    # The chain lock is taken at commit, so a slow decision (routing, grant, outbox) does not queue the
    # others behind it: another transaction appends and commits while this one is still open.
    with transaction(pg_engine) as slow:
        audit.append_entry(session=slow, actor="U0SLOW01", action="test.slow", subject_type="test",
                           subject_id=None, now=now)
        done = threading.Event()

        def fast() -> None:
            with transaction(pg_engine) as session:
                audit.append_entry(session=session, actor="U0FAST01", action="test.fast", subject_type="test",
                                   subject_id=None, now=now)
            done.set()

        writer = threading.Thread(target=fast)
        writer.start()
        assert done.wait(timeout=30), "the other writer waited for this transaction"
        writer.join()
    assert [e.action for e in _entries(pg_engine)] == ["test.fast", "test.slow"]
    assert _verify(pg_engine).ok
