"""Break-glass: immediate, short, announced to security, reviewed by the owner; never for prohibited systems."""

from datetime import timedelta

import pytest
import yaml
from sqlmodel import func, select

from tests.factories import ADMIN, OTHER, OWNER, classify_system, make_asset
from workflows.audit import verify_chain
from workflows.db import transaction
from workflows.emergency import break_glass, confirm_emergency
from workflows.enums import AccessLevel, GrantStatus, RequestStatus
from workflows.errors import InvalidInput, NotAllowed
from workflows.access import AlreadyDecided
from workflows.inventory import Actor
from workflows.models import AccessRequest, DecisionLogEntry, Grant, OutboxMessage
from workflows.policy import default_policy_text, parse_policy


@pytest.fixture
def security_policy():
    data = yaml.safe_load(default_policy_text())
    data["channels"]["security"] = "C0SECURITY"
    data["groups"]["admins"] = [ADMIN]
    return parse_policy(yaml.safe_dump(data))


def _glass(engine, asset, policy, now, who=OTHER, justification="Prod incident INC-42"):
    with transaction(engine) as session:
        return break_glass(session=session, asset_id=asset.id, level=AccessLevel.USE, justification=justification,
                           requester=Actor(who), now=now, policy=policy, reply_channel="C0INCIDENT")


def _rows(engine, model):
    with transaction(engine) as session:
        return list(session.exec(select(model)).all())


def test_break_glass_grants_at_once_for_the_policy_hours(engine, security_policy, now):
    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    grant = _glass(engine, asset, security_policy, now)
    assert grant.status == GrantStatus.ACTIVE and grant.emergency
    assert grant.expires_at == now + timedelta(hours=4) and grant.grantee_id == OTHER
    [request] = _rows(engine, AccessRequest)
    assert request.status == RequestStatus.APPROVED and request.emergency and request.resolution_note == "break-glass"


def test_break_glass_alerts_security_and_asks_the_owner_to_review(engine, security_policy, now):
    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    _glass(engine, asset, security_policy, now)
    rows = {(r.method, r.payload["template"]): r for r in _rows(engine, OutboxMessage)}
    assert rows[("post", "emergency_alert")].channel == "C0SECURITY"
    assert rows[("dm", "emergency_review")].user == OWNER
    assert rows[("ephemeral", "request_filed")].channel == "C0INCIDENT"
    actions = [e.action for e in _rows(engine, DecisionLogEntry)]
    assert actions[-3:] == ["access.emergency_requested", "access.approved", "access.granted"]


def test_no_security_channel_means_no_alert_but_still_a_review(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer")
    _glass(engine, asset, policy, now)
    templates = [r.payload["template"] for r in _rows(engine, OutboxMessage)]
    assert "emergency_alert" not in templates and "emergency_review" in templates


def test_never_for_a_prohibited_system_and_nothing_is_written(engine, security_policy, now):
    system = make_asset(engine, policy=security_policy, now=now, kind="system", name="Social scorer")
    classify_system(engine, system, "prohibited", policy=security_policy, now=now)
    with transaction(engine) as session:
        before = (session.exec(select(func.count()).select_from(DecisionLogEntry)).one(),
                  session.exec(select(func.count()).select_from(OutboxMessage)).one())
    with pytest.raises(NotAllowed):
        _glass(engine, system, security_policy, now)
    with transaction(engine) as session:
        after = (session.exec(select(func.count()).select_from(DecisionLogEntry)).one(),
                 session.exec(select(func.count()).select_from(OutboxMessage)).one())
    assert after == before and _rows(engine, AccessRequest) == [] and _rows(engine, Grant) == []


def test_an_empty_justification_is_refused(engine, security_policy, now):
    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    with pytest.raises(InvalidInput) as excinfo:
        _glass(engine, asset, security_policy, now, justification="   ")
    assert excinfo.value.field_errors == {"justification": "Say why you need access (at most 1000 characters)."}
    assert _rows(engine, Grant) == []


def test_the_owner_confirms_once_and_others_may_not(engine, security_policy, now):
    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    _glass(engine, asset, security_policy, now)
    [request] = _rows(engine, AccessRequest)
    with pytest.raises(NotAllowed), transaction(engine) as session:
        confirm_emergency(session=session, request_id=request.id, actor=Actor(OTHER), now=now,
                          policy=security_policy)
    with transaction(engine) as session:
        confirm_emergency(session=session, request_id=request.id, actor=Actor(OWNER), now=now,
                          policy=security_policy)
    with pytest.raises(AlreadyDecided), transaction(engine) as session:
        confirm_emergency(session=session, request_id=request.id, actor=Actor(OWNER), now=now,
                          policy=security_policy)
    assert _rows(engine, DecisionLogEntry)[-1].action == "access.emergency_reviewed"
    with transaction(engine) as session:
        assert verify_chain(session=session).ok


def test_an_admin_may_confirm_but_not_a_normal_request(engine, security_policy, now):
    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    _glass(engine, asset, security_policy, now)
    [request] = _rows(engine, AccessRequest)
    with transaction(engine) as session:
        decision = confirm_emergency(session=session, request_id=request.id,
                                     actor=Actor(ADMIN, frozenset({"admins"})), now=now, policy=security_policy)
    assert decision.outcome == "confirm" and decision.approver_id == ADMIN
    with pytest.raises(InvalidInput), transaction(engine) as session:
        confirm_emergency(session=session, request_id=request.id + 99, actor=Actor(OWNER), now=now,
                          policy=security_policy)


def test_no_second_break_glass_while_one_is_active(engine, security_policy, now):
    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    _glass(engine, asset, security_policy, now)
    from workflows.errors import Conflict

    with pytest.raises(Conflict) as excinfo:
        _glass(engine, asset, security_policy, now + timedelta(hours=1))
    assert excinfo.value.field == "emergency"
    assert len(_rows(engine, Grant)) == 1


def test_a_review_is_recorded_once_whoever_gives_it(engine, security_policy, now):
    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    _glass(engine, asset, security_policy, now)
    [request] = _rows(engine, AccessRequest)
    with transaction(engine) as session:
        confirm_emergency(session=session, request_id=request.id, actor=Actor(OWNER), now=now, policy=security_policy)
    with pytest.raises(AlreadyDecided) as excinfo, transaction(engine) as session:
        confirm_emergency(session=session, request_id=request.id, actor=Actor(ADMIN, frozenset({"admins"})),
                          now=now, policy=security_policy)
    assert excinfo.value.decided_by == OWNER


def test_ending_emergency_access_redraws_the_alert_and_review(engine, security_policy, now):
    from workflows.deadlines import end_expired_grant

    asset = make_asset(engine, policy=security_policy, now=now, kind="model", name="Fraud scorer")
    grant = _glass(engine, asset, security_policy, now)
    originals = {r.id for r in _rows(engine, OutboxMessage) if r.method in ("post", "dm")
                 and r.payload["template"] in ("emergency_alert", "emergency_review")}
    with transaction(engine) as session:
        assert end_expired_grant(session=session, grant_id=grant.id, now=now + timedelta(hours=4))
    redrawn = {r.updates_id for r in _rows(engine, OutboxMessage) if r.method == "update"}
    assert originals and originals <= redrawn
    templates = [r.payload["template"] for r in _rows(engine, OutboxMessage) if r.user == OTHER]
    assert "request_approved" not in templates
