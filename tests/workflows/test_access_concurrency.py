"""Concurrent clicks on PostgreSQL: the database, not the process, decides who wins, exactly once.

Every click runs in its own thread and its own transaction (workflows.db.transaction), and a barrier
releases them together, as Slack does when someone double-clicks or two approvers click at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from tests.factories import (
    OWNER,
    REQUESTER,
    chain_ok,
    editable_fields,
    last_outbox_id,
    log_actions,
    log_entries,
    make_asset,
    make_grant,
    make_request,
    members,
    outbox_rows,
    policy_with,
    reload_grant,
    reload_request,
    request_input,
    request_steps,
)
from workflows import access
from workflows.access import AlreadyDecided, IllegalTransition
from workflows.db import transaction
from workflows.enums import GrantStatus, RequestStatus
from workflows.errors import Conflict
from workflows.inventory import Actor, parse_asset_input, update_asset
from workflows.models import AccessRequest, Asset, Decision, Grant

THREADS = 8
LEVELS = ("read", "use", "admin")  # one fresh request per level, so each round starts clean
CREW = [f"U0CREW{i}" for i in range(THREADS)]
HOUR = timedelta(hours=1)


def _race(engine: Engine, clicks: list[Callable[[Session], object]]) -> list[object]:
    """Run each click in its own thread and transaction, all released at once; return results or errors."""
    barrier = threading.Barrier(len(clicks))
    outcomes: list[object] = [None] * len(clicks)

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            with transaction(engine) as session:
                outcomes[i] = clicks[i](session)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcomes[i] = exc

    pool = [threading.Thread(target=work, args=(i,)) for i in range(len(clicks))]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in pool)
    return outcomes


def _split(outcomes: list[object]) -> tuple[list[int], list[BaseException]]:
    """(indexes of the clicks that won, errors of those that lost); anything unexpected fails the test."""
    wins = [i for i, o in enumerate(outcomes) if not isinstance(o, BaseException)]
    losses = [o for o in outcomes if isinstance(o, BaseException)]
    unexpected = [o for o in losses if not isinstance(o, AlreadyDecided)]
    assert unexpected == [], unexpected
    return wins, losses


def _approve(request, approver, now):
    return lambda session: access.approve(session=session, request_id=request.id, approver_id=approver, now=now)


def _deny(request, approver, now):
    return lambda session: access.deny(session=session, request_id=request.id, approver_id=approver,
                                       reason="Not for this project", now=now)


def _rows(engine, model, **where) -> list:
    with transaction(engine) as session:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(session.exec(query).all())


@pytest.fixture
def crew_policy(policy):
    """Unclassified assets need one approval from the crew group."""
    return policy_with(policy, approvers={"minimal": ["crew"]}, groups=["crew"])


@pytest.fixture
def crew():
    return members({"crew": CREW, "governance": {"U0GOV1"}})


@pytest.fixture
def model(pg_engine, policy, now):
    return make_asset(pg_engine, policy=policy, now=now, kind="model", name="Fraud scorer")


@pytest.mark.parametrize("level", LEVELS)
def test_a_double_click_by_one_approver_decides_once(pg_engine, policy, now, model, level):
    request = make_request(pg_engine, model, policy=policy, now=now, level=level)
    seq, mark = len(log_entries(pg_engine)), last_outbox_id(pg_engine)
    outcomes = _race(pg_engine, [_approve(request, OWNER, now + HOUR)] * THREADS)
    wins, losses = _split(outcomes)
    assert len(wins) == 1 and len(losses) == THREADS - 1
    assert {e.decided_by for e in losses} == {OWNER}
    assert [(d.approver_id, d.outcome) for d in _rows(pg_engine, Decision, request_id=request.id)] == [
        (OWNER, "approve")]
    (grant,) = _rows(pg_engine, Grant, request_id=request.id)
    assert grant.status == GrantStatus.ACTIVE and grant.expires_at == now + HOUR + timedelta(hours=24)
    assert reload_request(pg_engine, request).status == RequestStatus.APPROVED
    assert log_actions(pg_engine, after_seq=seq) == ["access.approved_step", "access.approved", "access.granted"]
    told = [r for r in outbox_rows(pg_engine, after_id=mark) if r.payload.get("template") == "request_approved"]
    assert len(told) == 1
    assert chain_ok(pg_engine)


@pytest.mark.parametrize("level", LEVELS)
def test_two_approvers_of_one_step_clicking_at_once_decide_once(pg_engine, crew_policy, crew, now, model, level):
    request = make_request(pg_engine, model, policy=crew_policy, now=now, members_of=crew, level=level)
    assert request_steps(pg_engine, request)[0].approvers == sorted(CREW)
    outcomes = _race(pg_engine, [_approve(request, approver, now + HOUR) for approver in CREW])
    wins, losses = _split(outcomes)
    assert len(wins) == 1
    winner = CREW[wins[0]]
    assert {e.decided_by for e in losses} == {winner}
    assert [d.approver_id for d in _rows(pg_engine, Decision, request_id=request.id)] == [winner]
    assert len(_rows(pg_engine, Grant, request_id=request.id)) == 1
    assert request_steps(pg_engine, request)[0].approved_by == winner
    stored = reload_request(pg_engine, request)
    assert (stored.status, stored.resolved_by) == (RequestStatus.APPROVED, winner)
    assert chain_ok(pg_engine)


@pytest.mark.parametrize("level", LEVELS)
def test_approve_and_deny_at_once_end_in_exactly_one_state(pg_engine, crew_policy, crew, now, model, level):
    request = make_request(pg_engine, model, policy=crew_policy, now=now, members_of=crew, level=level)
    half = THREADS // 2
    clicks = [_approve(request, a, now + HOUR) for a in CREW[:half]] + \
             [_deny(request, a, now + HOUR) for a in CREW[half:]]
    wins, losses = _split(_race(pg_engine, clicks))
    assert len(wins) == 1
    winner, approved = CREW[wins[0]], wins[0] < half
    assert {e.decided_by for e in losses} == {winner}
    stored = reload_request(pg_engine, request)
    assert stored.status == (RequestStatus.APPROVED if approved else RequestStatus.DENIED)
    assert stored.resolved_by == winner
    decisions = _rows(pg_engine, Decision, request_id=request.id)
    assert [(d.approver_id, d.outcome) for d in decisions] == [(winner, "approve" if approved else "deny")]
    assert len(_rows(pg_engine, Grant, request_id=request.id)) == (1 if approved else 0)
    assert chain_ok(pg_engine)


def test_the_last_two_steps_approved_at_once_grant_once(pg_engine, policy, now, model):
    two_step = policy_with(policy, approvers={"minimal": ["owner", "crew"]}, groups=["crew"])
    crew = members({"crew": CREW[:4], "governance": {"U0GOV1"}})
    request = make_request(pg_engine, model, policy=two_step, now=now, members_of=crew)
    clicks = [_approve(request, OWNER, now + HOUR)] * 4 + [_approve(request, a, now + HOUR) for a in CREW[:4]]
    wins, losses = _split(_race(pg_engine, clicks))
    approvers = [OWNER] * 4 + CREW[:4]
    # One click per step wins: the owner's, and one crew member's.
    assert len(wins) == 2 and len(losses) == 6
    assert Counter(approvers[i] == OWNER for i in wins) == {True: 1, False: 1}
    assert len(_rows(pg_engine, Decision, request_id=request.id)) == 2
    assert len(_rows(pg_engine, Grant, request_id=request.id)) == 1
    assert reload_request(pg_engine, request).status == RequestStatus.APPROVED
    assert chain_ok(pg_engine)


def test_one_request_submitted_many_times_at_once_is_filed_once(pg_engine, policy, now, model):
    def submit(session: Session):
        return access.request_access(session=session, asset_id=model.id, data=request_input(),
                                     requester=Actor(REQUESTER), now=now, policy=policy, members_of=members())

    outcomes = _race(pg_engine, [submit] * THREADS)
    filed = [o for o in outcomes if isinstance(o, AccessRequest)]
    refused = [o for o in outcomes if not isinstance(o, AccessRequest)]
    assert len(filed) == 1
    assert all(type(o) is Conflict and o.field == "level" for o in refused), refused
    assert len(_rows(pg_engine, AccessRequest, status=RequestStatus.PENDING)) == 1
    assert chain_ok(pg_engine)


def test_revoke_release_and_expiry_at_once_end_a_grant_once(pg_engine, policy, now, model):
    grant = make_grant(pg_engine, model, policy=policy, now=now, duration_hours=1)
    at = now + HOUR  # the moment it expires
    clicks = [
        lambda s: access.revoke_grant(session=s, grant_id=grant.id, actor=Actor(OWNER), reason="Left the team",
                                      now=at, policy=policy),
        lambda s: access.release_grant(session=s, grant_id=grant.id, actor=Actor(REQUESTER), now=at),
        lambda s: access.expire_grant(session=s, grant_id=grant.id, now=at),
    ] * 3
    seq = len(log_entries(pg_engine))
    outcomes = _race(pg_engine, clicks[:THREADS])
    ended = [o for o in outcomes if isinstance(o, Grant)]
    assert len(ended) == 1, outcomes
    others = [o for o in outcomes if not isinstance(o, Grant)]
    # A late revoke or release is refused; a late expiry quietly finds nothing to do.
    assert all(o is None or isinstance(o, IllegalTransition | AlreadyDecided) for o in others), others
    stored = reload_grant(pg_engine, grant)
    assert stored.status in (GrantStatus.REVOKED, GrantStatus.EXPIRED) and stored.ended_at == at
    assert len([a for a in log_actions(pg_engine, after_seq=seq) if a.startswith("grant.")]) == 1
    assert chain_ok(pg_engine)


@pytest.mark.parametrize("round_", range(3))
def test_approving_an_extension_as_the_grant_expires_leaves_access_continuous(pg_engine, policy, now, model, round_):
    grant = make_grant(pg_engine, model, policy=policy, now=now, duration_hours=24)
    with transaction(pg_engine) as session:
        renewal = access.request_extension(session=session, grant_id=grant.id, actor=Actor(REQUESTER),
                                           now=now + HOUR, policy=policy, members_of=members())
    at = now + timedelta(hours=24)  # the moment the grant expires
    clicks = [_approve(renewal, OWNER, at), lambda s: access.expire_grant(session=s, grant_id=grant.id, now=at)]
    outcomes = _race(pg_engine, clicks * (THREADS // 2))
    approvals, expiries = outcomes[0::2], outcomes[1::2]
    wins, _ = _split(approvals)  # a deadlock, or any error but a lost click, fails here
    assert len(wins) == 1
    assert all(o is None or isinstance(o, Grant) for o in expiries), expiries
    assert sum(isinstance(o, Grant) for o in expiries) <= 1
    assert reload_request(pg_engine, renewal).status == RequestStatus.APPROVED
    active = [g for g in _rows(pg_engine, Grant, grantee_id=REQUESTER) if g.status == GrantStatus.ACTIVE]
    # Whichever came first, the grantee holds exactly one active grant running a day past `at`.
    assert [g.expires_at for g in active] == [at + timedelta(hours=24)]
    assert chain_ok(pg_engine)


# ---- lock order: a click arriving while another change holds the asset or the grant ---------------


def _wait_until_someone_waits_on_a_lock(engine: Engine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    pytest.fail("the click never reached the lock held by the other transaction")


def _click_in_background(engine, click) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def work() -> None:
        try:
            with transaction(engine) as session:
                outcome.append(click(session))
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    return thread, outcome


def test_an_approval_during_an_edit_of_the_asset_waits_instead_of_deadlocking(pg_engine, policy, now, model):
    request = make_request(pg_engine, model, policy=policy, now=now)
    with transaction(pg_engine) as edit:
        # update_asset's first step: lock the asset. The click arrives now, and must queue behind the
        # whole edit rather than take the decision log's lock the edit is about to need.
        edit.exec(select(Asset).where(Asset.id == model.id).with_for_update()).one()
        thread, outcome = _click_in_background(pg_engine, _approve(request, OWNER, now + HOUR))
        _wait_until_someone_waits_on_a_lock(pg_engine)
        update_asset(session=edit, asset_id=model.id, actor=Actor(OWNER), now=now + HOUR, policy=policy,
                     data=parse_asset_input(editable_fields(model, description="Scores card payments")))
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], AccessRequest), outcome
    assert reload_request(pg_engine, request).status == RequestStatus.APPROVED
    assert len(_rows(pg_engine, Grant, request_id=request.id)) == 1
    assert chain_ok(pg_engine)


def test_approving_an_extension_while_the_sweep_expires_the_grant_waits_instead_of_deadlocking(
        pg_engine, policy, now, model):
    grant = make_grant(pg_engine, model, policy=policy, now=now, duration_hours=24)
    with transaction(pg_engine) as session:
        renewal = access.request_extension(session=session, grant_id=grant.id, actor=Actor(REQUESTER),
                                           now=now + HOUR, policy=policy, members_of=members())
    at = now + timedelta(hours=24)
    with transaction(pg_engine) as sweep:
        sweep.exec(select(Grant).where(Grant.id == grant.id).with_for_update()).one()  # expire_grant's first step
        thread, outcome = _click_in_background(pg_engine, _approve(renewal, OWNER, at))
        _wait_until_someone_waits_on_a_lock(pg_engine)
        assert access.expire_grant(session=sweep, grant_id=grant.id, now=at) is not None
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], AccessRequest), outcome
    # The grant had ended, so the approved extension grants afresh, for a day from `at`.
    assert reload_grant(pg_engine, grant).status == GrantStatus.EXPIRED
    (fresh,) = _rows(pg_engine, Grant, request_id=renewal.id)
    assert fresh.status == GrantStatus.ACTIVE and fresh.expires_at == at + timedelta(hours=24)
    assert chain_ok(pg_engine)
