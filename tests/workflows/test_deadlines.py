"""Time: reminders, escalation and expiry of requests, and the warning and end of grants, at their deadlines."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from tests.factories import (
    GOV1,
    GOV2,
    GROUPS,
    OWNER,
    REQUESTER,
    SEC1,
    approve_request,
    chain_ok,
    deny_request,
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
    request_steps,
    row_counts,
)
from workflows import access, deadlines
from workflows.access import AlreadyDecided
from workflows.db import transaction
from workflows.enums import GrantStatus, RequestStatus
from workflows.inventory import Actor

SECOND, HOUR, DAY = timedelta(seconds=1), timedelta(hours=1), timedelta(days=1)


@pytest.fixture
def two_step(policy):
    """Unclassified assets need the owner, then security; governance is the fallback group."""
    return policy_with(policy, approvers={"minimal": ["owner", "security"]})


@pytest.fixture
def model(engine, policy, now):
    return make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer")


@pytest.fixture
def request_(engine, two_step, now, model):
    return make_request(engine, model, policy=two_step, now=now)


def _due(engine, at, policy) -> deadlines.DueWork:
    with transaction(engine) as session:
        return deadlines.due_work(session=session, now=at, policy=policy)


def _run(engine, action, **kwargs) -> bool:
    with transaction(engine) as session:
        return action(session=session, **kwargs)


def _remind(engine, request, at, policy) -> bool:
    return _run(engine, deadlines.remind, request_id=request.id, now=at, policy=policy)


def _escalate(engine, request, at, policy, members_of=None) -> bool:
    return _run(engine, deadlines.escalate, request_id=request.id, now=at, policy=policy,
                members_of=members_of or members())


def _expire(engine, request, at) -> bool:
    return _run(engine, deadlines.expire_request, request_id=request.id, now=at)


def _warn(engine, grant, at, policy) -> bool:
    return _run(engine, deadlines.warn_grant, grant_id=grant.id, now=at, policy=policy)


def _end(engine, grant, at) -> bool:
    return _run(engine, deadlines.end_expired_grant, grant_id=grant.id, now=at)


def _sweep(engine, at, policy, members_of=None) -> deadlines.DueWork:
    """What the worker does each minute: ask what is due, then do each piece in its own transaction."""
    due = _due(engine, at, policy)
    for request_id in due.reminders:
        _run(engine, deadlines.remind, request_id=request_id, now=at, policy=policy)
    for request_id in due.escalations:
        _run(engine, deadlines.escalate, request_id=request_id, now=at, policy=policy,
             members_of=members_of or members())
    for request_id in due.request_expiries:
        _run(engine, deadlines.expire_request, request_id=request_id, now=at)
    for grant_id in due.grant_warnings:
        _run(engine, deadlines.warn_grant, grant_id=grant_id, now=at, policy=policy)
    for grant_id in due.grant_expiries:
        _run(engine, deadlines.end_expired_grant, grant_id=grant_id, now=at)
    return due


def _idempotent(engine, call) -> None:
    """A second run of an action that just ran reports no work and writes nothing."""
    before = row_counts(engine)
    assert call() is False
    assert row_counts(engine) == before


def _dms(engine, *, after_id=0) -> list[tuple[str, str]]:
    return [(r.user, r.payload["template"]) for r in outbox_rows(engine, after_id=after_id) if r.method == "dm"]


# ---- reminders -----------------------------------------------------------------------------------


def test_the_first_reminder_is_due_exactly_four_hours_after_the_request(engine, two_step, now, request_):
    assert _due(engine, now + 4 * HOUR - SECOND, two_step).reminders == []
    assert _due(engine, now + 4 * HOUR - SECOND, two_step).total == 0
    assert _due(engine, now + 4 * HOUR, two_step).reminders == [request_.id]
    # Nothing else is due yet.
    assert _due(engine, now + 4 * HOUR, two_step).total == 1


def test_a_reminder_nudges_every_undecided_approver_and_schedules_the_next(engine, two_step, now, request_):
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    assert _remind(engine, request_, now + 4 * HOUR, two_step) is True
    assert sorted(_dms(engine, after_id=mark)) == [(OWNER, "approval_reminder"), (SEC1, "approval_reminder")]
    assert all(r.topic == f"request:{request_.id}" for r in outbox_rows(engine, after_id=mark))
    stored = reload_request(engine, request_)
    assert stored.reminders_sent == 1 and stored.next_reminder_at == now + 24 * HOUR
    assert [(e.action, e.actor, e.after["reminder"]) for e in log_entries(engine, after_seq=seq)] == [
        ("access.reminded", "steward", 1)]
    _idempotent(engine, lambda: _remind(engine, request_, now + 4 * HOUR, two_step))
    assert _due(engine, now + 4 * HOUR, two_step).reminders == []


def test_the_second_reminder_comes_at_24_hours_and_there_is_no_third(engine, two_step, now, request_):
    _remind(engine, request_, now + 4 * HOUR, two_step)
    assert _due(engine, now + 24 * HOUR - SECOND, two_step).reminders == []
    _idempotent(engine, lambda: _remind(engine, request_, now + 24 * HOUR - SECOND, two_step))
    assert _due(engine, now + 24 * HOUR, two_step).reminders == [request_.id]
    assert _remind(engine, request_, now + 24 * HOUR, two_step) is True
    stored = reload_request(engine, request_)
    assert stored.reminders_sent == 2 and stored.next_reminder_at is None
    for later in (now + 47 * HOUR, now + 6 * DAY):
        assert _due(engine, later, two_step).reminders == []
        _idempotent(engine, lambda at=later: _remind(engine, request_, at, two_step))


def test_a_reminder_skips_whoever_already_approved(engine, two_step, now, request_):
    approve_request(engine, request_, OWNER, now=now + HOUR)
    mark = last_outbox_id(engine)
    _remind(engine, request_, now + 4 * HOUR, two_step)
    assert _dms(engine, after_id=mark) == [(SEC1, "approval_reminder")]


# ---- escalation ----------------------------------------------------------------------------------


def test_escalation_is_due_at_48_hours(engine, two_step, now, request_):
    assert _due(engine, now + 48 * HOUR - SECOND, two_step).escalations == []
    _idempotent(engine, lambda: _escalate(engine, request_, now + 48 * HOUR - SECOND, two_step))
    assert _due(engine, now + 48 * HOUR, two_step).escalations == [request_.id]


def test_escalation_adds_the_fallback_group_to_every_open_step(engine, two_step, now, request_):
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    assert _escalate(engine, request_, now + 48 * HOUR, two_step) is True
    steps = request_steps(engine, request_)
    assert [s.approvers for s in steps] == [sorted([OWNER, GOV1, GOV2]), sorted([SEC1, GOV1, GOV2])]
    assert all("Escalated" in s.rerouted for s in steps)
    # Each newcomer is asked once, however many steps they joined; the requester is told.
    assert Counter(_dms(engine, after_id=mark)) == {(GOV1, "approval_request"): 1, (GOV2, "approval_request"): 1,
                                                    (REQUESTER, "request_escalated"): 1}
    assert reload_request(engine, request_).escalate_at is None
    entry = log_entries(engine, after_seq=seq)
    assert [(e.action, e.after["added"]) for e in entry] == [("access.escalated", sorted([GOV1, GOV2]))]
    _idempotent(engine, lambda: _escalate(engine, request_, now + 48 * HOUR, two_step))
    assert _due(engine, now + 50 * HOUR, two_step).escalations == []
    # The newcomers can now decide.
    approve_request(engine, request_, GOV1, now=now + 49 * HOUR)
    approve_request(engine, request_, GOV2, now=now + 49 * HOUR)
    assert reload_request(engine, request_).status == RequestStatus.APPROVED


def test_escalation_leaves_approved_steps_alone(engine, two_step, now, request_):
    approve_request(engine, request_, OWNER, now=now + HOUR)
    mark = last_outbox_id(engine)
    _escalate(engine, request_, now + 48 * HOUR, two_step)
    owner_step, security_step = request_steps(engine, request_)
    assert (owner_step.approvers, owner_step.rerouted) == ([OWNER], "")
    assert security_step.approvers == sorted([SEC1, GOV1, GOV2])
    assert sorted(u for u, t in _dms(engine, after_id=mark) if t == "approval_request") == sorted([GOV1, GOV2])


def test_escalation_never_asks_someone_who_already_approved_a_step(engine, policy, now, model):
    # GOV1 is in security and in the fallback group; having approved the security step, GOV1
    # may not approve the owner step as well, so escalation must not ask.
    custom = policy_with(policy, approvers={"minimal": ["security", "owner"]})
    members_of = members({**GROUPS, "security": {GOV1, SEC1}})
    request = make_request(engine, model, policy=custom, now=now, members_of=members_of)
    approve_request(engine, request, GOV1, now=now + HOUR)
    mark = last_outbox_id(engine)
    _escalate(engine, request, now + 48 * HOUR, custom, members_of)
    assert request_steps(engine, request)[1].approvers == sorted([OWNER, GOV2])
    assert (GOV1, "approval_request") not in _dms(engine, after_id=mark)
    assert log_entries(engine)[-1].after["added"] == [GOV2]


def test_escalation_never_hands_the_request_to_the_requester(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now, requester=GOV1)
    _escalate(engine, request, now + 48 * HOUR, two_step)
    assert all(GOV1 not in s.approvers for s in request_steps(engine, request))


def test_escalation_with_an_empty_fallback_group_is_logged_once_and_asks_no_one(engine, two_step, now, request_):
    nobody = members({"security": {SEC1}})
    approvers = [s.approvers for s in request_steps(engine, request_)]
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    assert _escalate(engine, request_, now + 48 * HOUR, two_step, nobody) is False
    assert log_actions(engine, after_seq=seq) == ["access.escalation_failed"]
    assert outbox_rows(engine, after_id=mark) == []
    assert [s.approvers for s in request_steps(engine, request_)] == approvers
    stored = reload_request(engine, request_)
    assert stored.status == RequestStatus.PENDING and stored.escalate_at is None
    # It is not retried every minute: the sweep no longer sees it, and a second run does nothing.
    assert _due(engine, now + 49 * HOUR, two_step).escalations == []
    _idempotent(engine, lambda: _escalate(engine, request_, now + 49 * HOUR, two_step, nobody))


# ---- request expiry ------------------------------------------------------------------------------


def test_a_request_nobody_decides_expires_after_seven_days(engine, two_step, now, request_):
    assert _due(engine, now + 7 * DAY - SECOND, two_step).request_expiries == []
    _idempotent(engine, lambda: _expire(engine, request_, now + 7 * DAY - SECOND))
    assert _due(engine, now + 7 * DAY, two_step).request_expiries == [request_.id]
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    assert _expire(engine, request_, now + 7 * DAY) is True
    stored = reload_request(engine, request_)
    assert (stored.status, stored.resolved_by, stored.resolved_at) == (RequestStatus.EXPIRED, "steward",
                                                                       now + 7 * DAY)
    assert stored.next_reminder_at is None and stored.escalate_at is None and stored.expires_at is None
    assert _dms(engine, after_id=mark) == [(REQUESTER, "request_expired")]
    assert log_actions(engine, after_seq=seq) == ["access.expired"]
    _idempotent(engine, lambda: _expire(engine, request_, now + 7 * DAY))
    assert _due(engine, now + 8 * DAY, two_step).total == 0
    # A click on an expired request loses.
    with pytest.raises(AlreadyDecided):
        approve_request(engine, request_, OWNER, now=now + 7 * DAY + HOUR)


# ---- resolved requests are left alone ------------------------------------------------------------


def _approve(engine, request, now):
    approve_request(engine, request, OWNER, now=now + HOUR)
    approve_request(engine, request, SEC1, now=now + HOUR)


def _deny(engine, request, now):
    deny_request(engine, request, SEC1, now=now + HOUR)


def _cancel(engine, request, now):
    with transaction(engine) as session:
        access.cancel_request(session=session, request_id=request.id, actor=Actor(REQUESTER), now=now + HOUR)


@pytest.mark.parametrize("resolve", [_approve, _deny, _cancel], ids=["approved", "denied", "cancelled"])
def test_a_resolved_request_is_never_reminded_escalated_or_expired(engine, two_step, now, request_, resolve):
    resolve(engine, request_, now)
    for at in (now + 4 * HOUR, now + 24 * HOUR, now + 48 * HOUR, now + 7 * DAY, now + 30 * DAY):
        due = _due(engine, at, two_step)
        assert request_.id not in due.reminders + due.escalations + due.request_expiries
    final = now + 8 * DAY
    _idempotent(engine, lambda: _remind(engine, request_, final, two_step))
    _idempotent(engine, lambda: _escalate(engine, request_, final, two_step))
    _idempotent(engine, lambda: _expire(engine, request_, final))


def test_a_request_resolved_while_the_sweep_was_queued_is_left_alone(engine, two_step, now, request_):
    due = _due(engine, now + 7 * DAY, two_step)
    assert request_.id in due.reminders and request_.id in due.request_expiries
    _deny(engine, request_, now + 7 * DAY)
    for request_id in due.reminders:
        _idempotent(engine, lambda r=request_id: _run(engine, deadlines.remind, request_id=r, now=now + 7 * DAY,
                                                      policy=two_step))
    _idempotent(engine, lambda: _expire(engine, request_, now + 7 * DAY))
    assert reload_request(engine, request_).status == RequestStatus.DENIED


# ---- grants --------------------------------------------------------------------------------------


@pytest.fixture
def grant(engine, policy, now, model):
    """Three days of access from `now`."""
    return make_grant(engine, model, policy=policy, now=now, duration_hours=72)


def test_a_grant_warning_is_due_a_day_before_expiry_and_sent_once(engine, policy, now, grant):
    expires = now + 72 * HOUR
    assert reload_grant(engine, grant).expires_at == expires
    assert _due(engine, expires - 24 * HOUR - SECOND, policy).grant_warnings == []
    _idempotent(engine, lambda: _warn(engine, grant, expires - 24 * HOUR - SECOND, policy))
    assert _due(engine, expires - 24 * HOUR, policy).grant_warnings == [grant.id]
    mark = last_outbox_id(engine)
    assert _warn(engine, grant, expires - 24 * HOUR, policy) is True
    assert reload_grant(engine, grant).warned_at == expires - 24 * HOUR
    rows = outbox_rows(engine, after_id=mark)
    assert [(r.method, r.user, r.topic, r.payload) for r in rows] == [
        ("dm", "U0REQUEST1", f"grant:{grant.id}", {"template": "grant_expiring", "grant_id": grant.id})]
    _idempotent(engine, lambda: _warn(engine, grant, expires - 2 * HOUR, policy))
    assert _due(engine, expires - 2 * HOUR, policy).grant_warnings == []


def test_a_grant_ends_exactly_at_its_expiry(engine, policy, now, grant):
    expires = now + 72 * HOUR
    assert _due(engine, expires - SECOND, policy).grant_expiries == []
    _idempotent(engine, lambda: _end(engine, grant, expires - SECOND))
    assert _due(engine, expires, policy).grant_expiries == [grant.id]
    # At expiry it is too late to warn: the grant ends instead.
    assert _due(engine, expires, policy).grant_warnings == []
    _idempotent(engine, lambda: _warn(engine, grant, expires, policy))
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    assert _end(engine, grant, expires) is True
    stored = reload_grant(engine, grant)
    assert (stored.status, stored.ended_at, stored.ended_by, stored.end_reason) == (
        GrantStatus.EXPIRED, expires, "steward", "expired")
    assert _dms(engine, after_id=mark) == [(REQUESTER, "grant_expired")]
    assert log_actions(engine, after_seq=seq) == ["grant.expired"]
    _idempotent(engine, lambda: _end(engine, grant, expires + HOUR))
    assert _due(engine, expires + DAY, policy).total == 0
    assert chain_ok(engine)


def test_a_revoked_grant_is_neither_warned_nor_expired(engine, policy, now, grant):
    with transaction(engine) as session:
        access.revoke_grant(session=session, grant_id=grant.id, actor=Actor(OWNER), reason="Left the team",
                            now=now + HOUR, policy=policy)
    expires = now + 72 * HOUR
    assert _due(engine, expires - HOUR, policy).total == 0 and _due(engine, expires, policy).total == 0
    _idempotent(engine, lambda: _warn(engine, grant, expires - HOUR, policy))
    _idempotent(engine, lambda: _end(engine, grant, expires))
    assert reload_grant(engine, grant).status == GrantStatus.REVOKED


def test_an_extended_grant_is_warned_again_before_its_new_expiry(engine, policy, now, grant):
    expires = now + 72 * HOUR
    _warn(engine, grant, expires - 24 * HOUR, policy)
    with transaction(engine) as session:
        renewal = access.request_extension(session=session, grant_id=grant.id, actor=Actor(REQUESTER),
                                           now=expires - 20 * HOUR, policy=policy, members_of=members())
    approve_request(engine, renewal, OWNER, now=expires - 10 * HOUR)
    new_expiry = expires + 72 * HOUR
    assert reload_grant(engine, grant).expires_at == new_expiry
    # The old expiry passes without ending it.
    assert _due(engine, expires, policy).grant_expiries == []
    _idempotent(engine, lambda: _end(engine, grant, expires))
    assert _due(engine, new_expiry - 24 * HOUR, policy).grant_warnings == [grant.id]
    assert _warn(engine, grant, new_expiry - 24 * HOUR, policy) is True


# ---- custom timings and a whole timeline ---------------------------------------------------------


def test_custom_policy_timings_are_honoured(engine, two_step, now, model):
    fast = policy_with(two_step, approvals={"remind_after_hours": [1], "escalate_after_hours": 2,
                                            "expire_after_days": 1})
    request = make_request(engine, model, policy=fast, now=now)
    stored = reload_request(engine, request)
    assert (stored.next_reminder_at, stored.escalate_at, stored.expires_at) == (now + HOUR, now + 2 * HOUR,
                                                                                now + DAY)
    assert _sweep(engine, now + HOUR - SECOND, fast).total == 0
    assert _sweep(engine, now + HOUR, fast).reminders == [request.id]
    assert reload_request(engine, request).next_reminder_at is None  # only one reminder in this policy
    assert _sweep(engine, now + 2 * HOUR - SECOND, fast).total == 0
    assert _sweep(engine, now + 2 * HOUR, fast).escalations == [request.id]
    assert _sweep(engine, now + DAY - SECOND, fast).total == 0
    assert _sweep(engine, now + DAY, fast).request_expiries == [request.id]
    assert reload_request(engine, request).status == RequestStatus.EXPIRED
    assert _sweep(engine, now + 30 * DAY, fast).total == 0


def test_custom_grant_warning_lead_is_honoured(engine, policy, now, model):
    early = policy_with(policy, grants={"duration_choices_days": [1, 7], "warn_before_hours": 48})
    grant = make_grant(engine, model, policy=early, now=now, duration_hours=72)
    assert _due(engine, now + 24 * HOUR - SECOND, early).grant_warnings == []
    assert _due(engine, now + 24 * HOUR, early).grant_warnings == [grant.id]


def test_a_whole_unanswered_request_as_the_sweep_sees_it(engine, two_step, now, request_):
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    timeline = [(now + minutes * timedelta(minutes=1)) for minutes in range(0, 8 * 24 * 60 + 1, 60)]
    timeline += [now + 4 * HOUR, now + 24 * HOUR, now + 48 * HOUR, now + 7 * DAY]  # the deadlines themselves
    for at in sorted(timeline):
        _sweep(engine, at, two_step)
        _sweep(engine, at, two_step)  # a second sweep in the same minute does nothing more
    assert log_actions(engine, after_seq=seq) == ["access.reminded", "access.reminded", "access.escalated",
                                                  "access.expired"]
    assert Counter(t for _, t in _dms(engine, after_id=mark)) == {
        "approval_reminder": 4, "approval_request": 2, "request_escalated": 1, "request_expired": 1}
    assert reload_request(engine, request_).status == RequestStatus.EXPIRED
    assert chain_ok(engine)


def test_the_deadlines_follow_the_frozen_clock(engine, two_step, model):
    # The edges read the clock; the domain only ever sees the `now` they pass in.
    with freeze_time("2026-03-02 09:00:00"):
        request = make_request(engine, model, policy=two_step, now=datetime.now(UTC))
    with freeze_time("2026-03-02 12:59:59"):
        assert _sweep(engine, datetime.now(UTC), two_step).total == 0
    with freeze_time("2026-03-02 13:00:00"):
        assert _sweep(engine, datetime.now(UTC), two_step).reminders == [request.id]
    with freeze_time("2026-03-09 09:00:00"):
        assert _sweep(engine, datetime.now(UTC), two_step).request_expiries == [request.id]
    assert reload_request(engine, request).status == RequestStatus.EXPIRED
