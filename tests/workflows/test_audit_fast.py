"""`verify_chain_batched`'s fast path: it proves an intact chain without the explaining walk, in parallel
for a large log, and hands every kind of tampering to the walk, which names it exactly as before."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.workflows.test_audit import _append, _tamper, _verify
from workflows import audit

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
