"""Anchors: the log's head written with the post that witnesses it, due once a day, and verify checking
the log against them, so that truncating the log, and rewriting it after the cut, are caught."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from tests.factories import row_counts
from tests.workflows.test_audit import _append, _entries, _tamper
from workflows.anchors import anchor_due, anchor_if_due, create_anchor, record_receipt, verify_log
from workflows.db import transaction
from workflows.errors import InvalidInput
from workflows.models import AuditAnchor, OutboxMessage
from workflows.outbox import OutboxMethod, mark_sent
from workflows.policy import Policy

AUDIT_CHANNEL = "C0AUDIT01"
DAY = timedelta(hours=24)


@pytest.fixture
def audit_policy(policy) -> Policy:
    """The default policy with an audit channel."""
    data = policy.model_dump(mode="json")
    data["channels"]["audit"] = AUDIT_CHANNEL
    return Policy.model_validate(data)


def _anchor(engine, now, policy) -> AuditAnchor:
    with transaction(engine) as session:
        return create_anchor(session=session, now=now, policy=policy)


def _due(engine, now) -> bool:
    with transaction(engine) as session:
        return anchor_due(session=session, now=now)


def _anchors(engine) -> list[AuditAnchor]:
    with transaction(engine) as session:
        return list(session.exec(select(AuditAnchor).order_by(AuditAnchor.id)).all())


# ---- anchoring --------------------------------------------------------------------------------------


def test_an_anchor_and_its_post_are_written_together(engine, now, audit_policy):
    _append(engine, now, 3)
    head = _entries(engine)[-1]

    anchor = _anchor(engine, now + timedelta(minutes=5), audit_policy)

    (stored,) = _anchors(engine)
    assert (stored.seq, stored.head_hash, stored.entry_count) == (3, head.hash, 3)
    assert stored.anchored_at == now + timedelta(minutes=5)
    assert (stored.channel, stored.ts) == ("", ""), "Slack has not answered yet"
    with transaction(engine) as session:
        post = session.get(OutboxMessage, anchor.outbox_id)
    assert (post.method, post.channel, post.topic) == (OutboxMethod.POST, AUDIT_CHANNEL, "audit_anchor:3")
    assert post.payload == {"template": "audit_anchor", "seq": 3, "head_hash": head.hash, "entry_count": 3,
                            "anchored_at": (now + timedelta(minutes=5)).isoformat()}


def test_an_anchor_is_due_once_a_day_and_only_for_a_non_empty_log(engine, now, audit_policy):
    assert not _due(engine, now), "nothing to anchor yet"
    _append(engine, now, 1)
    assert _due(engine, now)
    _anchor(engine, now, audit_policy)
    assert not _due(engine, now)
    assert not _due(engine, now + DAY - timedelta(seconds=1))
    assert _due(engine, now + DAY)


def test_anchor_if_due_anchors_once_however_often_it_runs(engine, now, audit_policy):
    _append(engine, now, 2)
    with transaction(engine) as session:
        first = anchor_if_due(session=session, now=now, policy=audit_policy)
    with transaction(engine) as session:
        again = anchor_if_due(session=session, now=now + timedelta(hours=1), policy=audit_policy)
    assert first is not None and again is None
    assert len(_anchors(engine)) == 1


def test_no_audit_channel_means_no_anchor(engine, now, policy):
    assert policy.channels.audit == ""
    _append(engine, now, 2)
    before = row_counts(engine)
    with transaction(engine) as session:
        assert anchor_if_due(session=session, now=now, policy=policy) is None
    with pytest.raises(InvalidInput, match="channels.audit"):
        _anchor(engine, now, policy)
    assert row_counts(engine) == before


def test_an_empty_log_cannot_be_anchored(engine, now, audit_policy):
    with pytest.raises(InvalidInput, match="empty"):
        _anchor(engine, now, audit_policy)
    assert _anchors(engine) == []


def test_slacks_answer_is_copied_onto_the_anchor_once(engine, now, audit_policy):
    _append(engine, now, 1)
    anchor = _anchor(engine, now, audit_policy)
    with transaction(engine) as session:
        post = session.get(OutboxMessage, anchor.outbox_id)
        mark_sent(session=session, message=post, channel=AUDIT_CHANNEL, ts="1700000000.000100", now=now)
        assert record_receipt(session=session, message=post)
    # A second answer for the same row (a lapsed claim sent it twice) changes nothing.
    again = OutboxMessage(id=anchor.outbox_id, created_at=now, method="post", payload={"template": "audit_anchor"},
                          sent_channel="C0OTHER", sent_ts="1700000000.999999")
    with transaction(engine) as session:
        assert not record_receipt(session=session, message=again), "the first answer stands"
    (stored,) = _anchors(engine)
    assert (stored.channel, stored.ts) == (AUDIT_CHANNEL, "1700000000.000100")


def test_other_messages_leave_anchors_alone(engine, now, audit_policy):
    _append(engine, now, 1)
    _anchor(engine, now, audit_policy)
    other = OutboxMessage(id=999, created_at=now, method="post", channel="C1", payload={"template": "x"},
                          sent_ts="1.2", sent_channel="C1")
    with transaction(engine) as session:
        assert not record_receipt(session=session, message=other)
    assert _anchors(engine)[0].ts == ""


# ---- verifying against anchors --------------------------------------------------------------------


def test_an_intact_log_matches_its_anchors(engine, now, audit_policy):
    _append(engine, now, 3)
    _anchor(engine, now, audit_policy)
    _append(engine, now + DAY, 2)
    _anchor(engine, now + DAY, audit_policy)
    _append(engine, now + 2 * DAY, 1)

    verdict = verify_log(engine=engine, anchors=True)

    assert verdict.ok and verdict.problem == ""
    assert (verdict.chain.count, verdict.chain.head_hash) == (6, _entries(engine)[-1].hash)
    assert (verdict.anchors.checked, verdict.anchors.posted) == (2, 0)
    assert verdict.anchors.latest_at == now + DAY
    assert verify_log(engine=engine).anchors is None, "anchors only when asked for"


def test_truncation_is_caught_only_with_anchors(engine, now, audit_policy):
    _append(engine, now, 5)
    _anchor(engine, now, audit_policy)
    _tamper(engine, "DELETE FROM decision_log WHERE seq > 3")

    assert verify_log(engine=engine).ok, "the shorter chain is intact"
    verdict = verify_log(engine=engine, anchors=True)

    assert not verdict.ok
    assert verdict.first_bad_seq == 4
    assert verdict.problem.startswith("entry 4: missing: the log ends at entry 3")
    assert "recorded 5 entries up to entry 5" in verdict.problem and "truncated" in verdict.problem
    assert "\n" not in verdict.problem


def test_a_rewrite_after_truncation_is_caught_by_the_anchors(engine, now, audit_policy):
    _append(engine, now, 2)
    _anchor(engine, now, audit_policy)
    _append(engine, now + timedelta(hours=1), 3)
    anchored = _anchor(engine, now + DAY, audit_policy)
    # Cut the log after entry 3 and write new entries: a valid chain, and longer than anchored.
    _tamper(engine, "DELETE FROM decision_log WHERE seq > 3")
    _append(engine, now + 2 * DAY, 3, actor="U0MALLORY")

    assert verify_log(engine=engine).chain.count == 6
    verdict = verify_log(engine=engine, anchors=True)

    assert verdict.first_bad_seq == 5
    assert verdict.problem.startswith("entry 5: rewritten: its hash is")
    assert anchored.head_hash[:16] in verdict.problem
    assert "changed in entries 3-5" in verdict.problem, "the earlier anchor (entry 2) still matches"
    assert verdict.anchors.checked == 2


def test_the_anchor_names_where_slack_holds_it(engine, now, audit_policy):
    _append(engine, now, 3)
    anchor = _anchor(engine, now, audit_policy)
    with transaction(engine) as session:
        post = session.get(OutboxMessage, anchor.outbox_id)
        mark_sent(session=session, message=post, channel=AUDIT_CHANNEL, ts="1700000000.000100", now=now)
        record_receipt(session=session, message=post)
    _tamper(engine, "DELETE FROM decision_log WHERE seq = 3")

    verdict = verify_log(engine=engine, anchors=True)

    assert verdict.anchors.posted == 1
    assert f"in {AUDIT_CHANNEL} at ts 1700000000.000100" in verdict.problem


def test_a_broken_chain_is_reported_before_the_anchors_past_it(engine, now, audit_policy):
    _append(engine, now, 5)
    _anchor(engine, now, audit_policy)
    _tamper(engine, "DELETE FROM decision_log WHERE seq = 2")

    verdict = verify_log(engine=engine, anchors=True)

    assert verdict.first_bad_seq == 2
    assert verdict.problem.startswith("entry 2: missing")
    assert verdict.anchors.ok, "the anchor lies past the break: nothing to compare it with"


def test_an_anchored_entry_rewritten_in_place_is_caught_by_the_chain_first(engine, now, audit_policy):
    _append(engine, now, 4)
    _anchor(engine, now, audit_policy)
    _tamper(engine, "UPDATE decision_log SET actor = 'U0MALLORY' WHERE seq = 4")
    verdict = verify_log(engine=engine, anchors=True)
    assert (verdict.first_bad_seq, verdict.chain.count) == (4, 3)
    assert "modified" in verdict.problem


# ---- PostgreSQL guards anchors as it guards the log -------------------------------------------------


def test_postgresql_lets_an_anchor_gain_only_its_receipt(pg_engine, now, audit_policy):
    _append(pg_engine, now, 2)
    anchor = _anchor(pg_engine, now, audit_policy)

    refused = [
        "UPDATE audit_anchor SET head_hash = 'f' WHERE id = :id",
        "UPDATE audit_anchor SET seq = 1, ts = '1.1' WHERE id = :id",
        "DELETE FROM audit_anchor WHERE id = :id",
        "TRUNCATE audit_anchor",
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="audit_anchor is append-only"), pg_engine.begin() as conn:
            conn.execute(text(statement), {"id": anchor.id})

    with pg_engine.begin() as conn:
        conn.execute(text("UPDATE audit_anchor SET channel = 'C1', ts = '1.1' WHERE id = :id"), {"id": anchor.id})
    with pytest.raises(DBAPIError, match="audit_anchor is append-only"), pg_engine.begin() as conn:
        conn.execute(text("UPDATE audit_anchor SET ts = '2.2' WHERE id = :id"), {"id": anchor.id})
    (stored,) = _anchors(pg_engine)
    assert (stored.seq, stored.head_hash, stored.channel, stored.ts) == (2, anchor.head_hash, "C1", "1.1")

