"""`verify_chain_batched`'s fast path: it proves an intact chain without the explaining walk, in parallel
for a large log, and hands every kind of tampering to the walk, which names it exactly as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from tests.workflows.test_audit import _append, _tamper, _verify
from workflows import audit
from workflows.db import transaction
from workflows.models import DecisionLogEntry

TAMPERING = [
    "UPDATE decision_log SET actor = 'U0MALLORY' WHERE seq = 7",
    "UPDATE decision_log SET after = '{\"n\": 99}' WHERE seq = 2",
    "UPDATE decision_log SET at = '2020-01-01 00:00:00' WHERE seq = 10",
    "DELETE FROM decision_log WHERE seq = 6",
    "DELETE FROM decision_log WHERE seq = 12",  # the tail: no chain can tell (anchors do), nor may this
    "DELETE FROM decision_log WHERE seq = 1",
    "UPDATE decision_log SET prev_hash = hash WHERE seq = 9",
]


@pytest.fixture(params=[False, True], ids=["one process", "parallel"])
def parallel(request, monkeypatch) -> bool:
    """Run each test once in-process and once with the log split across worker processes."""
    if request.param:
        monkeypatch.setattr(audit, "_PARALLEL_FROM", 1)
        monkeypatch.setattr(audit, "_processes", lambda engine, count: 3)
    return request.param


def test_an_intact_chain_is_proved_without_the_walk(engine, now, parallel, monkeypatch):
    _append(engine, now, 12)
    expected = _verify(engine)
    monkeypatch.setattr(audit, "_walk", lambda *a, **k: pytest.fail("the fast path should have proved it"))

    report = audit.verify_chain_batched(engine=engine, batch_size=5)

    assert report == expected and report.ok and report.count == 12


@pytest.mark.parametrize("sql", TAMPERING)
def test_tampering_is_reported_exactly_as_the_walk_reports_it(engine, now, parallel, sql):
    _append(engine, now, 12)
    _tamper(engine, sql)

    report = audit.verify_chain_batched(engine=engine, batch_size=5)

    assert report == _verify(engine)
    assert report.ok is sql.endswith("seq = 12")


def test_an_entry_appended_after_the_count_was_taken_is_left_for_the_next_run(engine, now, monkeypatch):
    _append(engine, now, 4)
    real = audit._check_range

    def append_meanwhile(*args):
        _append(engine, now + timedelta(hours=1), 1, actor="U0LATE")
        return real(*args)

    monkeypatch.setattr(audit, "_check_range", append_meanwhile)
    report = audit.verify_chain_batched(engine=engine)
    assert report.ok and report.count == 4


def test_the_fast_path_stays_in_one_process_inside_a_daemon(engine, now, monkeypatch):
    class Daemon:
        daemon = True

    monkeypatch.setattr(audit, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(audit, "current_process", lambda: Daemon())
    assert audit._processes(engine, 10**6) == 1
    monkeypatch.setattr(audit, "current_process", lambda: type("Main", (), {"daemon": False})())
    assert audit._processes(engine, 10**6) >= 1


# ---- the fast path renders each entry as compute_hash does, byte for byte --------------------------------
# It reads plain text (times, JSON columns) and builds the canonical JSON itself, so these prove its bytes
# are compute_hash's: an entry whose values are awkward to encode must be proved by the fast path alone,
# with the walk's verdict, and a chain rewritten through the walk's own reading must look the same to both.
AWKWARD = [
    {"before": None, "after": None, "subject_id": None},
    {"before": {}, "after": []},
    {"before": {"b": 1, "a": {"d": [3, {"z": None, "y": True}], "c": False}}, "after": {"a": 1}},
    {"before": {"text": "Zoë, 東京, emoji 🎉, quote \" backslash \\ slash / tab \t newline \n nul \x00 \u2028"},
     "after": {"ünïcode kéy": "x", "\x7f": "del"}},
    {"before": {"float": 0.1, "big": 10**30, "neg": -1.5e-300, "exp": 1e16, "int": -0}, "after": {"list": [1.0, 2]}},
    {"actor": "U0ÉLODIE\"", "action": "tést.ünusual\\", "subject_slug": "slug with \"quotes\" and ✓",
     "subject_type": "t\nype", "subject_id": -7},
    {"subject_id": 2**31 - 1},
]
MOMENTS = [  # microseconds 0, a trailing zero, a single one, all six; in UTC and in other zones
    datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    datetime(2026, 3, 2, 9, 0, 0, 120000, tzinfo=UTC),
    datetime(2026, 3, 2, 9, 0, 0, 5, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30, 0, 100, tzinfo=timezone(timedelta(hours=2))),  # the day before in UTC
    datetime(2024, 2, 29, 23, 30, 0, 10, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(1970, 1, 1, tzinfo=UTC),
]


def _append_awkward(engine) -> None:
    for i, moment in enumerate(MOMENTS):
        for fields in AWKWARD:
            values = {"actor": "U0OWNER1", "action": "test.awkward", "subject_type": "test", "subject_id": i,
                      "subject_slug": f"thing-{i}", "before": None, "after": None} | fields
            with transaction(engine) as session:
                audit.append_entry(session=session, now=moment, **values)


def _walk_must_not_run(monkeypatch) -> None:
    monkeypatch.setattr(audit, "_walk", lambda *a, **k: pytest.fail("the fast path should have proved it"))


def test_awkward_values_and_times_are_proved_by_the_fast_path(engine, parallel, monkeypatch):
    _append_awkward(engine)
    expected = _verify(engine)
    assert expected.ok and expected.count == len(AWKWARD) * len(MOMENTS)
    _walk_must_not_run(monkeypatch)

    assert audit.verify_chain_batched(engine=engine, batch_size=4) == expected


def test_the_session_time_zone_does_not_change_the_rendering(pg_engine, parallel, monkeypatch):
    engine = pg_engine  # only PostgreSQL has a session time zone (and date style)
    _append_awkward(engine)
    expected = _verify(engine)
    url = engine.url.render_as_string(hide_password=False)
    elsewhere = create_engine(url, connect_args={"options": "-c TimeZone=Asia/Kathmandu -c DateStyle=SQL,DMY"})
    try:
        _walk_must_not_run(monkeypatch)
        monkeypatch.setattr(audit, "make_engine", lambda _url: create_engine(
            url, connect_args={"options": "-c TimeZone=America/St_Johns -c DateStyle=German"}))
        assert audit.verify_chain_batched(engine=elsewhere, batch_size=4) == expected
    finally:
        elsewhere.dispose()


def _rechain(engine, sql: str) -> None:
    """Tamper with `sql`, then recompute every hash from the walk's own reading of the entries, as
    someone covering their tracks would: the walk then finds nothing wrong."""
    _tamper(engine, sql)
    with transaction(engine) as session:
        prev, rows = audit.GENESIS_HASH, []
        for entry in session.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.seq)).all():
            rows.append({"seq": entry.seq, "prev_hash": prev, "hash": audit.compute_hash(prev, entry)})
            prev = rows[-1]["hash"]
    for row in rows:
        _tamper(engine, "UPDATE decision_log SET prev_hash = :prev_hash, hash = :hash WHERE seq = :seq", **row)


REWRITES = {  # a rewrite of entry 3, then every hash recomputed: what both must make of it
    "sqlite": [
        ("UPDATE decision_log SET at = '2026-03-02 09:00:00.5' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET at = '2026-03-02 09:00:00' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET at = '2026-03-02T09:00:00.000000' WHERE seq = 3", "walk"),
        ("UPDATE decision_log SET at = '2026-03-02 09:00:00+05:00' WHERE seq = 3", "walk"),
        ("UPDATE decision_log SET at = '2026-03-02 09:00:00.123456789' WHERE seq = 3", "walk"),
        ("UPDATE decision_log SET after = '{\"n\": 1, \"n\": 2, \"m\": 1.50}' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET after = ' {\"n\" : 1 } ' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET after = NULL, before = 'null' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET subject_id = 'x3' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET subject_id = 3.5 WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET actor = 7 WHERE seq = 3", "walk"),
    ],
    "postgresql": [
        ("UPDATE decision_log SET at = '2026-03-02 09:00:00.5+00' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET at = '1999-12-31 23:59:59.99999-11' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET after = '{\"n\": 1, \"n\": 2, \"m\": 1.50}' WHERE seq = 3", "fast"),
        ("UPDATE decision_log SET after = NULL, before = 'null' WHERE seq = 3", "fast"),
    ],
}


@pytest.mark.parametrize(("backend", "sql", "decided_by"),
                         [(backend, sql, how) for backend, rewrites in REWRITES.items() for sql, how in rewrites])
def test_a_rewritten_and_rehashed_chain_looks_the_same_to_both(request, backend, sql, decided_by, now, parallel,
                                                              monkeypatch):
    engine = request.getfixturevalue("pg_engine" if backend == "postgresql" else "sqlite_engine")
    _append(engine, now, 6)
    _rechain(engine, sql)
    expected = _verify(engine)
    assert expected.ok, expected.problem
    if decided_by == "fast":
        _walk_must_not_run(monkeypatch)

    assert audit.verify_chain_batched(engine=engine, batch_size=4) == expected


def test_a_time_the_walk_cannot_read_is_never_proved_by_the_fast_path(sqlite_engine, now):
    # "2026-02-30" fits the stored form but is no date: the walk cannot read it (fromisoformat raises),
    # so the fast path must not vouch for it either, even with the hash made to fit its rendering.
    _append(sqlite_engine, now, 3)
    _tamper(sqlite_engine, "UPDATE decision_log SET at = '2026-02-30 09:00:00.000000' WHERE seq = 3")
    row = _entry_raw(sqlite_engine, 3)
    row.at = SimpleNamespace(isoformat=lambda timespec: "2026-02-30T09:00:00.000000+00:00")
    prev = _entry_raw(sqlite_engine, 2).hash
    _tamper(sqlite_engine, "UPDATE decision_log SET hash = :hash WHERE seq = 3", hash=audit.compute_hash(prev, row))

    with pytest.raises(ValueError):
        audit.verify_chain_batched(engine=sqlite_engine)


def _entry_raw(engine, seq: int) -> SimpleNamespace:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM decision_log WHERE seq = :seq"), {"seq": seq}).mappings().one()
    return SimpleNamespace(**{k: (json.loads(v) if k in ("before", "after") and v is not None else v)
                              for k, v in row.items()})
