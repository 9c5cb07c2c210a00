"""Access services on a real database: requesting, lineage-aware routing, deciding, grants and extensions."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlmodel import select

from tests.factories import (
    ADMIN,
    DATA_OWNER,
    GOV1,
    GOV2,
    GROUPS,
    OTHER,
    OWNER,
    REQUESTER,
    SEC1,
    approve_request,
    chain_ok,
    classify_system,
    deny_request,
    grants_of,
    last_outbox_id,
    log_actions,
    log_entries,
    make_asset,
    make_grant,
    make_request,
    members,
    outbox_rows,
    policy_with,
    reload,
    reload_grant,
    reload_request,
    request_input,
    request_steps,
    retire,
    row_counts,
)
from workflows import access, deadlines
from workflows.access import AlreadyDecided
from workflows.classification import classify_system as classify_with_questionnaire
from workflows.db import transaction
from workflows.enums import AccessLevel, GrantStatus, RequestStatus, RiskTier
from workflows.errors import Conflict, InvalidInput, NotAllowed, NotFound
from workflows.inventory import Actor
from workflows.models import Asset, Decision, Grant
from workflows.risk import RiskAnswers

U3 = "U0PERSON3"
HOUR = timedelta(hours=1)


@pytest.fixture
def two_step(policy):
    """Unclassified assets need the owner, then someone from governance."""
    return policy_with(policy, approvers={"minimal": ["owner", "governance"]})


@pytest.fixture
def model(engine, policy, now):
    return make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer")


def _changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {table: after[table] - before[table] for table in after if after[table] != before[table]}


def _decisions(engine, request) -> list[Decision]:
    with transaction(engine) as session:
        return list(session.exec(select(Decision).where(Decision.request_id == request.id)
                                 .order_by(Decision.id)).all())


def _approval_dms(engine, request):
    return [r for r in outbox_rows(engine) if r.topic == f"request:{request.id}" and r.method == "dm"]


def _refused(engine, error, call):
    """Run `call`, expect `error`, and prove nothing at all was written."""
    before = row_counts(engine)
    with pytest.raises(error) as excinfo:
        call()
    assert row_counts(engine) == before
    return excinfo.value


# ---- requesting ----------------------------------------------------------------------------------


def test_a_request_writes_the_request_its_steps_one_log_entry_and_its_messages(engine, two_step, now, model):
    before, mark = row_counts(engine), last_outbox_id(engine)
    request = make_request(engine, model, policy=two_step, now=now, level="use", duration_hours=48)
    assert _changed(before, row_counts(engine)) == {"access_request": 1, "approval_step": 2, "decision_log": 1,
                                                    "outboxmessage": 4}
    stored = reload_request(engine, request)
    assert stored.status == RequestStatus.PENDING and stored.requester_id == REQUESTER
    assert (stored.level, stored.duration_hours, stored.justification) == (AccessLevel.USE, 48,
                                                                           "Monthly churn analysis")
    assert stored.created_at == now and stored.renews_grant_id is None and stored.emergency is False
    assert stored.next_reminder_at == now + timedelta(hours=4)
    assert stored.escalate_at == now + timedelta(hours=48)
    assert stored.expires_at == now + timedelta(days=7)
    assert [(s.position, s.group, s.approvers, s.rerouted, s.approved_by) for s in request_steps(engine, request)] \
        == [(0, "owner", [OWNER], "", ""), (1, "governance", sorted([GOV1, GOV2]), "", "")]

    entry = log_entries(engine)[-1]
    assert (entry.action, entry.actor, entry.subject_type, entry.subject_id, entry.subject_slug) == (
        "access.requested", REQUESTER, "access_request", request.id, "fraud-scorer")
    assert entry.after["level"] == "use" and entry.after["duration_hours"] == 48
    assert [(s["group"], s["approvers"]) for s in entry.after["steps"]] == [
        ("owner", [OWNER]), ("governance", sorted([GOV1, GOV2]))]

    rows = outbox_rows(engine, after_id=mark)
    dms = [r for r in rows if r.method == "dm"]
    assert sorted(r.user for r in dms) == sorted([OWNER, GOV1, GOV2])
    for row in dms:
        assert row.topic == f"request:{request.id}"
        assert row.payload == {"template": "approval_request", "request_id": request.id, "approver": row.user}
    (ephemeral,) = [r for r in rows if r.method == "ephemeral"]
    assert (ephemeral.user, ephemeral.channel, ephemeral.topic) == (REQUESTER, "C0REPLY1", f"request:{request.id}")
    assert ephemeral.payload == {"template": "request_filed", "request_id": request.id}
    assert chain_ok(engine)


def test_someone_in_two_steps_gets_one_dm(engine, policy, now, model):
    custom = policy_with(policy, approvers={"minimal": ["governance", "reviewers"]}, groups=["reviewers"])
    request = make_request(engine, model, policy=custom, now=now,
                           members_of=members({**GROUPS, "reviewers": {GOV1, U3}}))
    assert Counter(r.user for r in _approval_dms(engine, request)) == {GOV1: 1, GOV2: 1, U3: 1}


def test_an_unknown_asset_is_not_found(engine, policy, now):
    with transaction(engine) as session, pytest.raises(NotFound):
        access.request_access(session=session, asset_id=999, data=request_input(), requester=Actor(REQUESTER),
                              now=now, policy=policy, members_of=members())


def test_a_retired_asset_cannot_be_requested(engine, policy, now, model):
    retire(engine, model, policy=policy, now=now)
    error = _refused(engine, InvalidInput, lambda: make_request(engine, model, policy=policy, now=now))
    assert "retired" in str(error)


@pytest.mark.parametrize("target", ["system", "model"])
@pytest.mark.parametrize("emergency", [False, True])
def test_nothing_reached_by_a_prohibited_system_can_be_requested(engine, policy, now, model, target, emergency):
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Social score",
                        lineage={"uses": [model.id]})
    classify_system(engine, system, "prohibited", policy=policy, now=now)
    asset = system if target == "system" else model
    error = _refused(engine, NotAllowed, lambda: make_request(engine, asset, policy=policy, now=now,
                                                               duration_hours=1, emergency=emergency))
    assert "prohibited" in str(error)


def _high_tier(engine, policy, now, model):
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Loan desk",
                        lineage={"uses": [model.id]})
    classify_system(engine, system, "high", policy=policy, now=now)


@pytest.mark.parametrize(
    ("tier", "hours", "emergency", "limit"),
    [
        (None, 90 * 24, False, None),
        (None, 90 * 24 + 1, False, "At most 90 days for this asset."),
        ("high", 30 * 24, False, None),
        ("high", 30 * 24 + 1, False, "At most 30 days for this asset."),
        (None, 4, True, None),
        (None, 5, True, "At most 4 hours for this asset."),
    ],
)
def test_the_duration_is_capped_by_the_tier(engine, policy, now, model, tier, hours, emergency, limit):
    if tier == "high":
        _high_tier(engine, policy, now, model)

    def file():
        return make_request(engine, model, policy=policy, now=now, duration_hours=hours, emergency=emergency)

    if limit is None:
        assert reload_request(engine, file()).duration_hours == hours
        return
    error = _refused(engine, InvalidInput, file)
    assert error.field_errors == {"duration_hours": limit}


def test_a_second_pending_request_for_the_same_asset_and_level_is_a_conflict(engine, policy, now, model):
    first = make_request(engine, model, policy=policy, now=now, level="read")
    error = _refused(engine, Conflict, lambda: make_request(engine, model, policy=policy, now=now, level="read"))
    assert error.field == "level" and f"#{first.id}" in str(error)
    # Another level, or another person, is a different request.
    make_request(engine, model, policy=policy, now=now, level="use")
    make_request(engine, model, policy=policy, now=now, level="read", requester=OTHER)
    # Once the first is no longer pending, the same request may be filed again.
    with transaction(engine) as session:
        access.cancel_request(session=session, request_id=first.id, actor=Actor(REQUESTER), now=now)
    again = make_request(engine, model, policy=policy, now=now, level="read")
    assert reload_request(engine, again).status == RequestStatus.PENDING


# ---- lineage-aware routing -----------------------------------------------------------------------


def _groups_and_approvers(engine, request) -> list[tuple[str, list[str]]]:
    return [(s.group, s.approvers) for s in request_steps(engine, request)]


@pytest.mark.parametrize(
    ("sensitivity", "personal", "asked"),
    [
        ("restricted", False, True),
        ("confidential", False, True),
        ("internal", True, True),
        ("public", True, True),
        ("internal", False, False),
        ("public", False, False),
    ],
)
def test_a_model_trained_on_sensitive_data_needs_that_data_owner(engine, policy, now, sensitivity, personal,
                                                                 asked):
    data = make_asset(engine, policy=policy, now=now, name="Loan applications", owner_id=DATA_OWNER,
                      sensitivity=sensitivity, contains_personal_data=personal)
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer",
                       lineage={"trained_on": [data.id]})
    _high_tier(engine, policy, now, model)
    request = make_request(engine, model, policy=policy, now=now)
    expected = [("owner", [OWNER]), ("security", [SEC1])] + ([("data_owners", [DATA_OWNER])] if asked else [])
    assert _groups_and_approvers(engine, request) == expected
    assert (DATA_OWNER in {r.user for r in _approval_dms(engine, request)}) is asked


def test_data_owners_are_found_through_derived_from_transitively(engine, policy, now):
    raw = make_asset(engine, policy=policy, now=now, name="Raw loans", owner_id=DATA_OWNER,
                     sensitivity="restricted")
    cleaned = make_asset(engine, policy=policy, now=now, name="Clean loans", owner_id=U3, sensitivity="internal",
                         lineage={"derived_from": [raw.id]})
    base = make_asset(engine, policy=policy, now=now, kind="model", name="Base scorer",
                      lineage={"trained_on": [cleaned.id]})
    tuned = make_asset(engine, policy=policy, now=now, kind="model", name="Tuned scorer",
                       lineage={"derived_from": [base.id]})
    _high_tier(engine, policy, now, tuned)
    request = make_request(engine, tuned, policy=policy, now=now)
    # The internal dataset in between adds no one; the restricted one two hops up does.
    assert _groups_and_approvers(engine, request)[-1] == ("data_owners", [DATA_OWNER])


def test_a_system_using_such_a_model_needs_the_data_owner_too(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loan applications", owner_id=DATA_OWNER,
                      sensitivity="restricted")
    other = make_asset(engine, policy=policy, now=now, name="Credit files", owner_id=U3,
                       contains_personal_data=True)
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer",
                       lineage={"trained_on": [data.id, other.id]})
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Loan desk",
                        lineage={"uses": [model.id]})
    with transaction(engine) as session:
        classify_with_questionnaire(session=session, asset_id=system.id, actor=Actor(OWNER), now=now, policy=policy,
                                    answers=RiskAnswers.model_validate({"annex_iii_areas": ["employment"]}))
    request = make_request(engine, system, policy=policy, now=now)
    assert _groups_and_approvers(engine, request) == [
        ("owner", [OWNER]), ("security", [SEC1]), ("data_owners", sorted([DATA_OWNER, U3]))]


def test_the_data_owner_must_approve_before_access_is_granted(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loan applications", owner_id=DATA_OWNER,
                      sensitivity="restricted")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer",
                       lineage={"trained_on": [data.id]})
    _high_tier(engine, policy, now, model)
    request = make_request(engine, model, policy=policy, now=now)
    approve_request(engine, request, OWNER, now=now)
    approve_request(engine, request, SEC1, now=now)
    assert reload_request(engine, request).status == RequestStatus.PENDING and grants_of(engine, request) == []
    approve_request(engine, request, DATA_OWNER, now=now)
    assert reload_request(engine, request).status == RequestStatus.APPROVED
    assert len(grants_of(engine, request)) == 1


def test_an_owner_who_also_owns_the_data_cannot_satisfy_both_steps(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loan applications", sensitivity="restricted")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer",
                       lineage={"trained_on": [data.id]})
    _high_tier(engine, policy, now, model)
    request = make_request(engine, model, policy=policy, now=now)
    owner_step, _, data_step = request_steps(engine, request)
    assert owner_step.approvers == [OWNER]
    assert data_step.approvers == sorted([GOV1, GOV2])
    assert "already approve another step" in data_step.rerouted


# ---- approving -----------------------------------------------------------------------------------


def test_the_requester_cannot_approve_or_deny_their_own_request(engine, two_step, now, model):
    # The requester is in governance, so a forged click would otherwise look like an approver's.
    request = make_request(engine, model, policy=two_step, now=now, requester=GOV1)
    assert request_steps(engine, request)[1].approvers == [GOV2]
    error = _refused(engine, NotAllowed, lambda: approve_request(engine, request, GOV1, now=now))
    assert "your own request" in str(error)
    _refused(engine, NotAllowed, lambda: deny_request(engine, request, GOV1, now=now))


def test_someone_who_is_not_an_approver_cannot_decide(engine, two_step, now, model):
    theirs = make_asset(engine, policy=two_step, now=now, kind="model", name="Other model", owner_id=OTHER)
    request = make_request(engine, model, policy=two_step, now=now)
    other_request = make_request(engine, theirs, policy=two_step, now=now)
    for stranger in (SEC1, ADMIN, U3):
        error = _refused(engine, NotAllowed, lambda s=stranger: approve_request(engine, request, s, now=now))
        assert "not an approver" in str(error)
        _refused(engine, NotAllowed, lambda s=stranger: deny_request(engine, request, s, now=now))
    # A forged button value: the owner of one asset clicks Approve on a request for another.
    _refused(engine, NotAllowed, lambda: approve_request(engine, other_request, OWNER, now=now))
    _refused(engine, NotAllowed, lambda: deny_request(engine, other_request, OWNER, now=now))


def test_a_click_on_an_unknown_request_is_not_found(engine, now):
    with transaction(engine) as session, pytest.raises(NotFound):
        access.approve(session=session, request_id=4242, approver_id=OWNER, now=now)


def test_approving_twice_is_already_decided_and_writes_nothing(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now)
    approve_request(engine, request, OWNER, now=now)
    error = _refused(engine, AlreadyDecided, lambda: approve_request(engine, request, OWNER, now=now + HOUR))
    assert error.decided_by == OWNER
    assert reload_request(engine, request).status == RequestStatus.PENDING
    assert [(d.approver_id, d.outcome) for d in _decisions(engine, request)] == [(OWNER, "approve")]


def test_one_person_satisfies_at_most_one_step(engine, policy, now, model):
    custom = policy_with(policy, approvers={"minimal": ["governance", "reviewers"]}, groups=["reviewers"])
    request = make_request(engine, model, policy=custom, now=now,
                           members_of=members({**GROUPS, "reviewers": {GOV1, U3}}))
    approve_request(engine, request, GOV1, now=now)
    _refused(engine, AlreadyDecided, lambda: approve_request(engine, request, GOV1, now=now))
    # GOV2 could only have satisfied the step GOV1 already did.
    error = _refused(engine, AlreadyDecided, lambda: approve_request(engine, request, GOV2, now=now))
    assert error.decided_by == GOV1
    assert reload_request(engine, request).status == RequestStatus.PENDING
    approve_request(engine, request, U3, now=now)
    assert reload_request(engine, request).status == RequestStatus.APPROVED
    steps = request_steps(engine, request)
    assert sorted(s.approved_by for s in steps) == sorted([GOV1, U3])
    assert {d.approver_id: d.step_id for d in _decisions(engine, request)} == {
        s.approved_by: s.id for s in steps}


@pytest.mark.parametrize("first", [OWNER, GOV1])
def test_an_approver_in_two_steps_takes_the_step_only_they_can_satisfy(engine, policy, now, model, first):
    # The owner is also in governance; were the owner's click spent on the governance step, nobody
    # would be left for the owner step and the request would hang until it escalates.
    custom = policy_with(policy, approvers={"minimal": ["governance", "owner"]})
    request = make_request(engine, model, policy=custom, now=now,
                           members_of=members({**GROUPS, "governance": {OWNER, GOV1}}))
    assert [s.approvers for s in request_steps(engine, request)] == [sorted([OWNER, GOV1]), [OWNER]]
    second = GOV1 if first == OWNER else OWNER
    approve_request(engine, request, first, now=now)
    approve_request(engine, request, second, now=now)
    assert reload_request(engine, request).status == RequestStatus.APPROVED
    assert [s.approved_by for s in request_steps(engine, request)] == [GOV1, OWNER]


def test_the_last_approval_grants_access_once(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now, level="use", duration_hours=72)
    seq = len(log_entries(engine))
    approve_request(engine, request, OWNER, now=now + HOUR)
    assert grants_of(engine, request) == []
    before, mark = row_counts(engine), last_outbox_id(engine)
    approve_request(engine, request, GOV2, now=now + 2 * HOUR)
    assert _changed(before, row_counts(engine))["access_grant"] == 1

    stored = reload_request(engine, request)
    assert (stored.status, stored.resolved_by, stored.resolved_at) == (RequestStatus.APPROVED, GOV2, now + 2 * HOUR)
    assert stored.next_reminder_at is None and stored.escalate_at is None and stored.expires_at is None
    (grant,) = grants_of(engine, request)
    assert (grant.grantee_id, grant.asset_id, grant.level, grant.status, grant.emergency) == (
        REQUESTER, model.id, AccessLevel.USE, GrantStatus.ACTIVE, False)
    assert grant.granted_at == now + 2 * HOUR
    assert grant.expires_at == now + 2 * HOUR + timedelta(hours=72)
    assert [(s.approved_by, s.approved_at) for s in request_steps(engine, request)] == [
        (OWNER, now + HOUR), (GOV2, now + 2 * HOUR)]
    assert [(d.approver_id, d.outcome) for d in _decisions(engine, request)] == [(OWNER, "approve"),
                                                                                 (GOV2, "approve")]

    assert log_actions(engine, after_seq=seq) == ["access.approved_step", "access.approved_step",
                                                  "access.approved", "access.granted"]
    granted = log_entries(engine)[-1]
    assert (granted.subject_type, granted.subject_id, granted.actor) == ("grant", grant.id, GOV2)
    assert granted.after["grantee"] == REQUESTER and granted.after["request"] == request.id
    told = [r for r in outbox_rows(engine, after_id=mark) if r.method == "dm"]
    assert [(r.user, r.topic, r.payload["template"]) for r in told] == [
        (REQUESTER, f"outcome:{request.id}", "request_approved")]
    # A late click by the other governance member loses, and says who won.
    error = _refused(engine, AlreadyDecided, lambda: approve_request(engine, request, GOV1, now=now + 3 * HOUR))
    assert error.decided_by == GOV2
    assert chain_ok(engine)


def test_a_partial_approval_redraws_every_approver_message(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now)
    originals = {r.id for r in _approval_dms(engine, request)}
    assert len(originals) == 3
    mark = last_outbox_id(engine)
    approve_request(engine, request, OWNER, now=now + HOUR)
    rows = outbox_rows(engine, after_id=mark)
    assert {r.method for r in rows} == {"update"}
    assert sorted(r.updates_id for r in rows) == sorted(originals)
    assert all(r.topic == f"request:{request.id}" and r.created_at == now + HOUR for r in rows)
    # The final approval redraws them again, and tells the requester.
    mark = last_outbox_id(engine)
    approve_request(engine, request, GOV1, now=now + 2 * HOUR)
    rows = outbox_rows(engine, after_id=mark)
    assert sorted(r.updates_id for r in rows if r.method == "update") == sorted(originals)


# ---- denying and cancelling ----------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   \n "])
def test_a_deny_needs_a_reason(engine, two_step, now, model, reason):
    request = make_request(engine, model, policy=two_step, now=now)
    error = _refused(engine, InvalidInput, lambda: deny_request(engine, request, GOV1, now=now, reason=reason))
    assert set(error.field_errors) == {"reason"}


def test_a_deny_reason_fits_its_column(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now)
    error = _refused(engine, InvalidInput, lambda: deny_request(engine, request, GOV1, now=now, reason="r" * 1001))
    assert set(error.field_errors) == {"reason"} and "1000" in error.field_errors["reason"]
    deny_request(engine, request, GOV1, now=now, reason=" " + "r" * 1000 + " ")
    assert reload_request(engine, request).resolution_note == "r" * 1000


def test_a_deny_ends_the_request_and_later_clicks_lose(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now)
    approve_request(engine, request, OWNER, now=now)
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    deny_request(engine, request, GOV1, now=now + HOUR, reason="  Use the anonymised extract instead. ")
    stored = reload_request(engine, request)
    assert (stored.status, stored.resolved_by, stored.resolution_note, stored.resolved_at) == (
        RequestStatus.DENIED, GOV1, "Use the anonymised extract instead.", now + HOUR)
    assert grants_of(engine, request) == []
    deny = _decisions(engine, request)[-1]
    assert (deny.approver_id, deny.outcome, deny.reason, deny.step_id) == (
        GOV1, "deny", "Use the anonymised extract instead.", None)
    assert log_actions(engine, after_seq=seq) == ["access.denied"]
    rows = outbox_rows(engine, after_id=mark)
    assert [(r.user, r.payload["template"]) for r in rows if r.method == "dm"] == [(REQUESTER, "request_denied")]
    assert sorted(r.updates_id for r in rows if r.method == "update") == sorted(
        r.id for r in _approval_dms(engine, request))

    for late in (lambda: approve_request(engine, request, GOV2, now=now + 2 * HOUR),
                 lambda: deny_request(engine, request, GOV2, now=now + 2 * HOUR)):
        error = _refused(engine, AlreadyDecided, late)
        assert error.decided_by == GOV1
    assert chain_ok(engine)


def test_someone_who_approved_a_step_cannot_then_deny(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now)
    approve_request(engine, request, OWNER, now=now)
    _refused(engine, AlreadyDecided, lambda: deny_request(engine, request, OWNER, now=now))
    assert reload_request(engine, request).status == RequestStatus.PENDING


def test_only_the_requester_can_cancel(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now)

    def cancel(user: str, *, groups: frozenset[str] = frozenset()):
        with transaction(engine) as session:
            return access.cancel_request(session=session, request_id=request.id, actor=Actor(user, groups), now=now)

    for someone in (OWNER, GOV1):
        _refused(engine, NotAllowed, lambda s=someone: cancel(s))
    _refused(engine, NotAllowed, lambda: cancel(ADMIN, groups=frozenset({"admins"})))
    seq = len(log_entries(engine))
    cancel(REQUESTER)
    stored = reload_request(engine, request)
    assert (stored.status, stored.resolved_by) == (RequestStatus.CANCELLED, REQUESTER)
    assert log_actions(engine, after_seq=seq) == ["access.cancelled"]
    error = _refused(engine, AlreadyDecided, lambda: approve_request(engine, request, OWNER, now=now))
    # A cancellation is nobody's decision: the click is told what happened instead of "decided by".
    assert (error.decided_by, str(error)) == ("", "The requester cancelled this request.")
    _refused(engine, AlreadyDecided, lambda: cancel(REQUESTER))


# ---- grants --------------------------------------------------------------------------------------


def _revoke(engine, grant, actor: Actor, *, policy, now, reason="Project ended"):
    with transaction(engine) as session:
        return access.revoke_grant(session=session, grant_id=grant.id, actor=actor, reason=reason, now=now,
                                   policy=policy)


@pytest.mark.parametrize("actor", [Actor(OWNER), Actor(ADMIN, frozenset({"admins"}))], ids=["owner", "admin"])
def test_the_owner_or_an_admin_revokes_a_grant_with_a_reason(engine, policy, now, model, actor):
    grant = make_grant(engine, model, policy=policy, now=now)
    _refused(engine, InvalidInput, lambda: _revoke(engine, grant, actor, policy=policy, now=now, reason=" "))
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    _revoke(engine, grant, actor, policy=policy, now=now + HOUR, reason=" Project ended ")
    stored = reload_grant(engine, grant)
    assert (stored.status, stored.ended_by, stored.end_reason, stored.ended_at) == (
        GrantStatus.REVOKED, actor.user_id, "Project ended", now + HOUR)
    entry = log_entries(engine, after_seq=seq)
    assert [(e.action, e.subject_type, e.subject_id, e.after["reason"]) for e in entry] == [
        ("grant.revoked", "grant", grant.id, "Project ended")]
    assert [(r.method, r.user, r.topic, r.payload["template"]) for r in outbox_rows(engine, after_id=mark)] == [
        ("dm", REQUESTER, f"grant:{grant.id}", "grant_revoked")]
    with transaction(engine) as session:
        assert access.active_grants(session=session, asset_id=model.id) == []
    error = _refused(engine, AlreadyDecided, lambda: _revoke(engine, grant, actor, policy=policy, now=now))
    assert str(error) == "This access has already been revoked."
    assert chain_ok(engine)


def test_a_revoke_reason_fits_its_column(engine, policy, now, model):
    grant = make_grant(engine, model, policy=policy, now=now)
    error = _refused(engine, InvalidInput,
                     lambda: _revoke(engine, grant, Actor(OWNER), policy=policy, now=now, reason="r" * 1001))
    assert set(error.field_errors) == {"reason"}
    _revoke(engine, grant, Actor(OWNER), policy=policy, now=now, reason="r" * 1000)
    assert reload_grant(engine, grant).end_reason == "r" * 1000


@pytest.mark.parametrize(
    "actor",
    [Actor(OTHER), Actor(REQUESTER), Actor(GOV1, frozenset({"governance"})), Actor(OTHER, frozenset({"Admins"}))],
    ids=["stranger", "grantee", "governance", "lookalike group"],
)
def test_nobody_else_revokes_a_grant(engine, policy, now, model, actor):
    grant = make_grant(engine, model, policy=policy, now=now)
    error = _refused(engine, NotAllowed, lambda: _revoke(engine, grant, actor, policy=policy, now=now))
    assert "owner" in str(error)
    assert reload_grant(engine, grant).status == GrantStatus.ACTIVE


def test_only_the_grantee_releases_a_grant(engine, policy, now, model):
    grant = make_grant(engine, model, policy=policy, now=now)

    def release(user: str):
        with transaction(engine) as session:
            return access.release_grant(session=session, grant_id=grant.id, actor=Actor(user), now=now + HOUR)

    for someone in (OWNER, OTHER):
        _refused(engine, NotAllowed, lambda s=someone: release(s))
    seq = len(log_entries(engine))
    release(REQUESTER)
    stored = reload_grant(engine, grant)
    assert (stored.status, stored.ended_by, stored.end_reason) == (GrantStatus.REVOKED, REQUESTER,
                                                                   "released by the grantee")
    assert log_actions(engine, after_seq=seq) == ["grant.revoked"]
    _refused(engine, AlreadyDecided, lambda: release(REQUESTER))


def _extend(engine, grant, user, *, policy, now):
    with transaction(engine) as session:
        return access.request_extension(session=session, grant_id=grant.id, actor=Actor(user), now=now,
                                        policy=policy, members_of=members())


@pytest.mark.parametrize("decided_after", [timedelta(hours=3), timedelta(hours=30)],
                         ids=["before expiry", "after expiry, before the sweep"])
def test_an_approved_extension_extends_the_same_grant(engine, policy, now, model, decided_after):
    grant = make_grant(engine, model, policy=policy, now=now, duration_hours=24, level="use")
    with transaction(engine) as session:
        assert deadlines.warn_grant(session=session, grant_id=grant.id, now=now + HOUR, policy=policy)
    assert reload_grant(engine, grant).warned_at == now + HOUR

    renewal = _extend(engine, grant, REQUESTER, policy=policy, now=now + 2 * HOUR)
    stored = reload_request(engine, renewal)
    assert (stored.renews_grant_id, stored.level, stored.duration_hours, stored.status) == (
        grant.id, AccessLevel.USE, 24, RequestStatus.PENDING)
    assert stored.justification.startswith(f"Extension of grant #{grant.id}: ")
    assert log_actions(engine)[-1] == "access.requested"
    assert [r.user for r in _approval_dms(engine, renewal)] == [OWNER]

    decided = now + decided_after
    approve_request(engine, renewal, OWNER, now=decided)
    extended = reload_grant(engine, grant)
    assert extended.expires_at == max(now + timedelta(hours=24), decided) + timedelta(hours=24)
    assert extended.status == GrantStatus.ACTIVE and extended.warned_at is None
    assert extended.request_id == grant.request_id  # the original grant, not a new one
    with transaction(engine) as session:
        assert len(session.exec(select(Grant)).all()) == 1
    granted = log_entries(engine)[-1]
    assert (granted.action, granted.subject_id, granted.after["request"]) == ("access.granted", grant.id, renewal.id)
    assert granted.after["expires_at"] == extended.expires_at.isoformat()
    assert chain_ok(engine)


def test_only_the_grantee_extends_an_active_grant_once_at_a_time(engine, policy, now, model):
    grant = make_grant(engine, model, policy=policy, now=now)
    _refused(engine, NotAllowed, lambda: _extend(engine, grant, OWNER, policy=policy, now=now))
    _extend(engine, grant, REQUESTER, policy=policy, now=now)
    error = _refused(engine, Conflict, lambda: _extend(engine, grant, REQUESTER, policy=policy, now=now))
    assert error.field == "level"

    ended = make_grant(engine, model, policy=policy, now=now, level="admin")
    _revoke(engine, ended, Actor(OWNER), policy=policy, now=now)
    _refused(engine, Conflict, lambda: _extend(engine, ended, REQUESTER, policy=policy, now=now))


# ---- reading, and the whole story in the log -----------------------------------------------------


def test_my_access_and_pending_approvals(engine, two_step, now, model):
    request = make_request(engine, model, policy=two_step, now=now)
    with transaction(engine) as session:
        assert [r.id for r in access.pending_approvals(session=session, user_id=GOV1)] == [request.id]
        assert access.pending_approvals(session=session, user_id=SEC1) == []
        assert access.my_access(session=session, user_id=REQUESTER)[1][0].id == request.id
    approve_request(engine, request, OWNER, now=now)
    with transaction(engine) as session:
        assert access.pending_approvals(session=session, user_id=OWNER) == []
        assert [r.id for r in access.pending_approvals(session=session, user_id=GOV2)] == [request.id]
    approve_request(engine, request, GOV2, now=now)
    with transaction(engine) as session:
        grants, pending = access.my_access(session=session, user_id=REQUESTER)
        assert [g.request_id for g in grants] == [request.id] and pending == []
        assert access.pending_approvals(session=session, user_id=GOV1) == []


def test_every_state_change_is_logged_and_the_chain_holds(engine, policy, now, model):
    seq = len(log_entries(engine))
    grant = make_grant(engine, model, policy=policy, now=now)
    renewal = _extend(engine, grant, REQUESTER, policy=policy, now=now + HOUR)
    approve_request(engine, renewal, OWNER, now=now + 2 * HOUR)
    denied = make_request(engine, model, policy=policy, now=now, level="use")
    deny_request(engine, denied, OWNER, now=now + HOUR)
    cancelled = make_request(engine, model, policy=policy, now=now, level="admin")
    with transaction(engine) as session:
        access.cancel_request(session=session, request_id=cancelled.id, actor=Actor(REQUESTER), now=now + HOUR)
    with transaction(engine) as session:
        access.release_grant(session=session, grant_id=grant.id, actor=Actor(REQUESTER), now=now + 3 * HOUR)
    assert log_actions(engine, after_seq=seq) == [
        "access.requested", "access.approved_step", "access.approved", "access.granted",   # first grant
        "access.requested", "access.approved_step", "access.approved", "access.granted",   # extension
        "access.requested", "access.denied",
        "access.requested", "access.cancelled",
        "grant.revoked",
    ]
    assert chain_ok(engine)
    assert {e.subject_slug for e in log_entries(engine, after_seq=seq)} == {"fraud-scorer"}


def test_tier_is_read_from_the_asset_when_the_request_is_filed(engine, policy, now, model):
    request = make_request(engine, model, policy=policy, now=now)
    assert [s.group for s in request_steps(engine, request)] == ["owner"]
    _high_tier(engine, policy, now, model)
    later = make_request(engine, model, policy=policy, now=now, level="use")
    assert [s.group for s in request_steps(engine, later)] == ["owner", "security"]
    assert reload(engine, model).effective_tier == RiskTier.HIGH


# ---- follow-ups: revoked access stays revoked, warnings are on record ------------------------------


def test_revoking_a_grant_withdraws_its_pending_extension(engine, policy, now, model):
    grant = make_grant(engine, model, policy=policy, now=now)
    with transaction(engine) as session:
        renewal = access.request_extension(session=session, grant_id=grant.id, actor=Actor(REQUESTER), now=now,
                                           policy=policy, members_of=members())
    _revoke(engine, grant, Actor(OWNER), policy=policy, now=now)
    stored = reload_request(engine, renewal)
    assert (stored.status, stored.resolved_by) == (RequestStatus.CANCELLED, "steward")
    error = _refused(engine, AlreadyDecided, lambda: approve_request(engine, renewal, OWNER, now=now))
    assert str(error) == "This request was withdrawn: the access it would extend was revoked."
    assert error.decided_by == ""
    assert chain_ok(engine)


def test_an_expiry_warning_is_on_the_decision_log(engine, policy, now, model):
    from workflows.deadlines import warn_grant

    grant = make_grant(engine, model, policy=policy, now=now, duration_hours=24)
    seq = len(log_entries(engine))
    with transaction(engine) as session:
        assert warn_grant(session=session, grant_id=grant.id, now=now + timedelta(hours=1), policy=policy)
    assert log_actions(engine, after_seq=seq) == ["grant.expiry_warned"]


def test_sensitive_upstream_lists_the_datasets_whose_owners_approve(engine, policy, now):
    public = make_asset(engine, policy=policy, now=now, name="Public stats", sensitivity="public")
    secret = make_asset(engine, policy=policy, now=now, name="Secret ledger", sensitivity="restricted", owner_id=OTHER)
    trained = make_asset(engine, policy=policy, now=now, kind="model", name="Ledger model",
                         lineage={"trained_on": [public.id, secret.id]})
    with transaction(engine) as session:
        found = access.sensitive_upstream(session=session, asset=session.get(Asset, trained.id))
        owners = access.data_owners_of(session=session, asset=session.get(Asset, trained.id))
    assert [d.slug for d in found] == ["secret-ledger"] and owners == {OTHER}
