"""Provisioning on a real database: grants wait for their connector, Done confirms a manual change,
revokes and expiries write revoke jobs, and a webhook job backs off, then fails and tells the owner."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from tests.factories import (
    ADMIN,
    OTHER,
    OWNER,
    REQUESTER,
    approve_request,
    chain_ok,
    grants_of,
    last_outbox_id,
    log_entries,
    make_asset,
    make_grant,
    make_request,
    outbox_rows,
    policy_with,
    reload_grant,
    row_counts,
)
from workflows import access, deadlines, emergency, provisioning
from workflows.access import AlreadyDecided
from workflows.db import transaction
from workflows.enums import (
    AccessLevel,
    ConnectorType,
    GrantStatus,
    ProvisioningAction,
    ProvisioningStatus,
    RiskTier,
)
from workflows.errors import Conflict, NotAllowed, NotFound
from workflows.inventory import Actor
from workflows.models import Grant, ProvisioningJob

HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)
IAM = {"type": "webhook", "url": "https://iam.example.com/steward", "secret_env": "STEWARD_IAM_SECRET"}


@pytest.fixture
def manual(policy):
    """Every grant is set up by hand by the asset's owner."""
    return policy_with(policy, connectors={"by-hand": {"type": "manual"}}, provisioning_connector="by-hand")


@pytest.fixture
def webhook(policy):
    """Every grant is set up by a signed webhook."""
    return policy_with(policy, connectors={"iam": IAM}, provisioning_connector="iam")


@pytest.fixture
def model(engine, policy, now):
    return make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer")


def jobs(engine, grant: Grant | None = None) -> list[ProvisioningJob]:
    with transaction(engine) as session:
        query = select(ProvisioningJob).order_by(ProvisioningJob.id)
        if grant is not None:
            query = query.where(ProvisioningJob.grant_id == grant.id)
        return list(session.exec(query).all())


def confirm(engine, job: ProvisioningJob, user: str, *, policy, now, groups=frozenset()) -> ProvisioningJob:
    with transaction(engine) as session:
        return provisioning.confirm_job(session=session, job_id=job.id, actor=Actor(user, groups), now=now,
                                        policy=policy)


def complete(engine, job: ProvisioningJob, *, ok: bool, now, error: str = "", retry_after=None):
    with transaction(engine) as session:
        return provisioning.complete_job(session=session, job_id=job.id, ok=ok, error=error, now=now,
                                         confirmed_by="steward" if ok else "", retry_after=retry_after)


def due(engine, at, policy) -> deadlines.DueWork:
    with transaction(engine) as session:
        return deadlines.due_work(session=session, now=at, policy=policy)


def revoke(engine, grant, *, policy, now, actor=OWNER):
    with transaction(engine) as session:
        return access.revoke_grant(session=session, grant_id=grant.id, actor=Actor(actor), reason="Left the team",
                                   now=now, policy=policy)


def refused(engine, error, call):
    """Run `call`, expect `error`, and prove nothing at all was written."""
    before = row_counts(engine)
    with pytest.raises(error) as excinfo:
        call()
    assert row_counts(engine) == before
    return excinfo.value


def templates(rows) -> list[tuple[str, str, str]]:
    return [(r.method, r.user, r.payload.get("template", "")) for r in rows]


# ---- no connector: nothing changes ---------------------------------------------------------------


def test_without_a_connector_a_grant_is_active_at_once_and_no_job_is_written(engine, policy, now, model):
    grant = make_grant(engine, model, policy=policy, now=now)
    assert grant.status == GrantStatus.ACTIVE and grant.expires_at == now + timedelta(hours=24)
    assert jobs(engine) == []
    assert "grant.provisioning_requested" not in [e.action for e in log_entries(engine)]


# ---- manual --------------------------------------------------------------------------------------


def test_approval_with_a_manual_connector_waits_for_the_owner(engine, manual, now, model):
    request = make_request(engine, model, policy=manual, now=now)
    mark, seq = last_outbox_id(engine), len(log_entries(engine))

    approve_request(engine, request, OWNER, now=now, policy=manual)

    [grant] = grants_of(engine, request)
    assert grant.status == GrantStatus.PROVISIONING
    [job] = jobs(engine)
    assert (job.grant_id, job.action, job.connector, job.connector_type, job.status, job.attempts) == (
        grant.id, ProvisioningAction.GRANT, "by-hand", ConnectorType.MANUAL, ProvisioningStatus.PENDING, 0)
    assert job.next_attempt_at is None and job.created_at == now  # a manual job is never due: it waits for Done
    entries = log_entries(engine, after_seq=seq)
    assert [e.action for e in entries] == ["access.approved_step", "access.approved", "access.granted",
                                           "grant.provisioning_requested"]
    assert entries[2].after["status"] == "provisioning" and entries[2].after["connector"] == "by-hand"
    assert (entries[3].subject_type, entries[3].subject_id, entries[3].after["job"]) == ("grant", grant.id, job.id)
    rows = outbox_rows(engine, after_id=mark)
    task = next(r for r in rows if r.payload.get("template") == "provisioning_manual")
    assert (task.method, task.user, task.topic, task.payload) == (
        "dm", OWNER, f"request:{request.id}", {"template": "provisioning_manual", "job_id": job.id})
    assert ("dm", REQUESTER, "request_approved") in templates(rows)

    # It does not count as access yet: no lists, no warning, no expiry.
    with transaction(engine) as session:
        assert access.active_grants(session=session, asset_id=model.id) == []
        assert access.my_access(session=session, user_id=REQUESTER)[0] == []
        assert access.expire_grant(session=session, grant_id=grant.id, now=now + 48 * HOUR) is None
    later = due(engine, now + 48 * HOUR, manual)
    assert later.grant_warnings == [] and later.grant_expiries == []
    with transaction(engine) as session:
        assert provisioning.due_job_ids(session=session, now=now + 48 * HOUR) == []


@pytest.mark.parametrize(("user", "groups"), [(OWNER, frozenset()), (ADMIN, frozenset({"admins"}))],
                         ids=["owner", "admin"])
def test_done_activates_the_grant_from_now_and_records_who_confirmed(engine, manual, now, model, user, groups):
    grant = make_grant(engine, model, policy=manual, now=now, duration_hours=24)
    [job] = jobs(engine)
    mark, seq = last_outbox_id(engine), len(log_entries(engine))
    done_at = now + 3 * HOUR

    confirm(engine, job, user, policy=manual, now=done_at, groups=groups)

    stored = reload_grant(engine, grant)
    assert (stored.status, stored.granted_at, stored.expires_at) == (GrantStatus.ACTIVE, done_at,
                                                                     done_at + timedelta(hours=24))
    [job] = jobs(engine)
    assert (job.status, job.confirmed_by, job.completed_at) == (ProvisioningStatus.SUCCEEDED, user, done_at)
    [entry] = log_entries(engine, after_seq=seq)
    assert (entry.action, entry.actor, entry.subject_id) == ("grant.provisioned", user, grant.id)
    assert entry.before == {"status": "provisioning"}
    assert entry.after["status"] == "active" and entry.after["confirmed_by"] == user
    rows = outbox_rows(engine, after_id=mark)
    assert ("dm", REQUESTER, "grant_active") in templates(rows)
    updated = {r.updates_id for r in rows if r.method == "update"}
    originals = {r.id for r in outbox_rows(engine) if r.payload.get("template") in (
        "provisioning_manual", "request_approved", "approval_request")}
    assert originals <= updated  # the owner's task, the approver's DM and the requester's news are redrawn
    with transaction(engine) as session:
        assert [g.id for g in access.active_grants(session=session, asset_id=model.id)] == [grant.id]

    error = refused(engine, AlreadyDecided, lambda: confirm(engine, job, OWNER, policy=manual, now=done_at))
    assert error.decided_by == user
    assert chain_ok(engine)


@pytest.mark.parametrize("user", [REQUESTER, OTHER, "U0GOV1"])
def test_done_by_anyone_else_is_refused_and_changes_nothing(engine, manual, now, model, user):
    grant = make_grant(engine, model, policy=manual, now=now)
    [job] = jobs(engine)
    error = refused(engine, NotAllowed, lambda: confirm(engine, job, user, policy=manual, now=now,
                                                         groups=frozenset({"governance"})))
    assert "owner" in str(error)
    assert reload_grant(engine, grant).status == GrantStatus.PROVISIONING
    refused(engine, NotFound, lambda: confirm(engine, ProvisioningJob(id=4242), OWNER, policy=manual, now=now))


def test_revoking_a_provisioned_grant_revokes_at_once_and_asks_the_owner_to_follow(engine, manual, now, model):
    grant = make_grant(engine, model, policy=manual, now=now)
    [grant_job] = jobs(engine)
    confirm(engine, grant_job, OWNER, policy=manual, now=now + HOUR)
    mark, seq = last_outbox_id(engine), len(log_entries(engine))

    revoke(engine, grant, policy=manual, now=now + 2 * HOUR)

    assert reload_grant(engine, grant).status == GrantStatus.REVOKED  # in Steward, at once
    [_, revoke_job] = jobs(engine)
    assert (revoke_job.action, revoke_job.connector, revoke_job.status, revoke_job.next_attempt_at) == (
        ProvisioningAction.REVOKE, "by-hand", ProvisioningStatus.PENDING, None)
    assert [e.action for e in log_entries(engine, after_seq=seq)] == ["grant.revoked", "grant.provisioning_requested"]
    rows = outbox_rows(engine, after_id=mark)
    assert ("dm", REQUESTER, "grant_revoked") in templates(rows)
    [task] = [r for r in rows if r.payload.get("template") == "provisioning_manual"]
    assert (task.user, task.payload["job_id"]) == (OWNER, revoke_job.id)

    seq = len(log_entries(engine))
    confirm(engine, revoke_job, OWNER, policy=manual, now=now + 3 * HOUR)
    [entry] = log_entries(engine, after_seq=seq)
    assert (entry.action, entry.actor, entry.after["confirmed_by"]) == ("grant.deprovisioned", OWNER, OWNER)
    assert reload_grant(engine, grant).status == GrantStatus.REVOKED
    assert chain_ok(engine)


def test_expiry_ignores_grants_being_set_up_and_revokes_at_the_connector_after(engine, manual, now, model):
    grant = make_grant(engine, model, policy=manual, now=now, duration_hours=24)
    [grant_job] = jobs(engine)
    assert due(engine, now + 30 * HOUR, manual).grant_expiries == []  # not active: not expiring either

    confirm(engine, grant_job, OWNER, policy=manual, now=now + 10 * HOUR)  # its day runs from here

    assert due(engine, now + 30 * HOUR, manual).grant_expiries == []
    assert due(engine, now + 34 * HOUR, manual).grant_expiries == [grant.id]
    with transaction(engine) as session:
        assert deadlines.end_expired_grant(session=session, grant_id=grant.id, now=now + 34 * HOUR)
    assert reload_grant(engine, grant).status == GrantStatus.EXPIRED
    assert [(j.action, j.status) for j in jobs(engine)] == [
        (ProvisioningAction.GRANT, ProvisioningStatus.SUCCEEDED), (ProvisioningAction.REVOKE, ProvisioningStatus.PENDING)]


def test_revoking_a_grant_still_being_set_up_cancels_its_task(engine, manual, now, model):
    grant = make_grant(engine, model, policy=manual, now=now)
    [job] = jobs(engine)
    mark, seq = last_outbox_id(engine), len(log_entries(engine))

    revoke(engine, grant, policy=manual, now=now + HOUR)

    assert reload_grant(engine, grant).status == GrantStatus.REVOKED
    [job] = jobs(engine)  # no revoke job: nothing was confirmed, and the owner's DM says so when redrawn
    assert (job.status, job.completed_at) == (ProvisioningStatus.CANCELLED, now + HOUR)
    assert [e.action for e in log_entries(engine, after_seq=seq)] == ["grant.revoked", "grant.provisioning_cancelled"]
    task = next(r for r in outbox_rows(engine) if r.payload.get("template") == "provisioning_manual")
    assert task.id in {r.updates_id for r in outbox_rows(engine, after_id=mark)}
    error = refused(engine, AlreadyDecided, lambda: confirm(engine, job, OWNER, policy=manual, now=now + HOUR))
    assert "revoked before it was set up" in str(error)


def test_a_tier_can_name_its_own_connector_or_none(engine, policy, now, model):
    tiered = policy_with(policy, connectors={"iam": IAM, "by-hand": {"type": "manual"}},
                         provisioning_connector="iam")
    data = tiered.model_dump(mode="json")
    data["tiers"]["minimal"]["connector"] = "none"
    no_minimal = type(tiered).model_validate(data)
    grant = make_grant(engine, model, policy=no_minimal, now=now)
    assert grant.status == GrantStatus.ACTIVE and jobs(engine) == []

    data["tiers"]["minimal"]["connector"] = "by-hand"
    by_hand = type(tiered).model_validate(data)
    other = make_asset(engine, policy=policy, now=now, name="Payments")
    grant = make_grant(engine, other, policy=by_hand, now=now)
    assert grant.status == GrantStatus.PROVISIONING
    assert [(j.connector, j.connector_type) for j in jobs(engine)] == [("by-hand", ConnectorType.MANUAL)]


def test_extending_an_active_grant_sets_nothing_up_again(engine, manual, now, model):
    grant = make_grant(engine, model, policy=manual, now=now, duration_hours=24)
    [job] = jobs(engine)
    confirm(engine, job, OWNER, policy=manual, now=now)
    with transaction(engine) as session:
        renewal = access.request_extension(session=session, grant_id=grant.id, actor=Actor(REQUESTER), now=now,
                                           policy=manual, members_of=lambda group: frozenset())
    approve_request(engine, renewal, OWNER, now=now + HOUR, policy=manual)
    stored = reload_grant(engine, grant)
    assert stored.status == GrantStatus.ACTIVE and stored.expires_at == now + timedelta(hours=48)
    assert len(jobs(engine)) == 1


def test_break_glass_with_a_connector_waits_for_it_too_and_blocks_a_second_break_glass(engine, manual, now, model):
    def break_glass():
        with transaction(engine) as session:
            return emergency.break_glass(session=session, asset_id=model.id, level=AccessLevel.READ,
                                         justification="Outage", requester=Actor(REQUESTER), now=now,
                                         policy=manual)

    grant = break_glass()
    assert grant.status == GrantStatus.PROVISIONING and grant.emergency
    [job] = jobs(engine)
    assert job.action == ProvisioningAction.GRANT
    error = refused(engine, Conflict, break_glass)
    assert "already hold emergency access" in str(error)


# ---- webhook -------------------------------------------------------------------------------------


def test_a_webhook_job_is_due_at_once_and_retries_with_backoff_then_fails_and_tells_the_owner(
        engine, webhook, now, model):
    grant = make_grant(engine, model, policy=webhook, now=now)
    [job] = jobs(engine)
    assert (job.connector_type, job.next_attempt_at) == (ConnectorType.WEBHOOK, now)
    assert not any(r.payload.get("template") == "provisioning_manual" for r in outbox_rows(engine))
    with transaction(engine) as session:
        assert provisioning.due_job_ids(session=session, now=now) == [job.id]

    at, waits = now, []
    for attempt in range(1, provisioning.MAX_ATTEMPTS):
        complete(engine, job, ok=False, error="http_503", now=at)
        [job] = jobs(engine)
        assert (job.status, job.attempts, job.last_error) == (ProvisioningStatus.PENDING, attempt, "http_503")
        waits.append(job.next_attempt_at - at)
        at = job.next_attempt_at
    assert waits == [MINUTE, 2 * MINUTE, 4 * MINUTE, 8 * MINUTE, 16 * MINUTE, 32 * MINUTE, HOUR]
    mark, seq = last_outbox_id(engine), len(log_entries(engine))

    complete(engine, job, ok=False, error="connection_error: TimeoutError", now=at)

    [job] = jobs(engine)
    assert (job.status, job.attempts, job.next_attempt_at, job.completed_at) == (
        ProvisioningStatus.FAILED, provisioning.MAX_ATTEMPTS, None, at)
    assert reload_grant(engine, grant).status == GrantStatus.PROVISIONING  # still not active
    [entry] = log_entries(engine, after_seq=seq)
    assert (entry.action, entry.after["attempts"], entry.after["error"]) == (
        "grant.provisioning_failed", 8, "connection_error: TimeoutError")
    rows = outbox_rows(engine, after_id=mark)
    [alert] = [r for r in rows if r.payload.get("template") == "provisioning_failed"]
    assert (alert.method, alert.user, alert.payload["job_id"]) == ("dm", OWNER, job.id)
    assert any(r.method == "update" for r in rows)  # the request's messages show the failure
    attempts = [e for e in log_entries(engine) if e.action == "grant.provisioning_attempt_failed"]
    assert [e.after["attempt"] for e in attempts] == list(range(1, 8))
    with transaction(engine) as session:
        assert provisioning.due_job_ids(session=session, now=at + 24 * HOUR) == []

    # The owner sets it up by hand and presses Done on the alert: the grant is active after all.
    confirm(engine, job, OWNER, policy=webhook, now=at + HOUR)
    assert reload_grant(engine, grant).status == GrantStatus.ACTIVE
    assert jobs(engine)[0].confirmed_by == OWNER
    assert chain_ok(engine)


def test_a_webhook_success_activates_and_done_is_refused_while_steward_is_still_trying(engine, webhook, now, model):
    grant = make_grant(engine, model, policy=webhook, now=now, duration_hours=24)
    [job] = jobs(engine)
    error = refused(engine, Conflict, lambda: confirm(engine, job, OWNER, policy=webhook, now=now))
    assert "still sending" in str(error)

    complete(engine, job, ok=True, now=now + MINUTE)

    stored = reload_grant(engine, grant)
    assert (stored.status, stored.expires_at) == (GrantStatus.ACTIVE, now + MINUTE + timedelta(hours=24))
    [job] = jobs(engine)
    assert (job.status, job.confirmed_by) == (ProvisioningStatus.SUCCEEDED, "steward")
    assert [e.actor for e in log_entries(engine) if e.action == "grant.provisioned"] == ["steward"]
    refused(engine, AlreadyDecided, lambda: complete(engine, job, ok=False, error="late", now=now + HOUR))


def test_retry_after_is_honoured(engine, webhook, now, model):
    make_grant(engine, model, policy=webhook, now=now)
    [job] = jobs(engine)
    complete(engine, job, ok=False, error="http_429", now=now, retry_after=600)
    assert jobs(engine)[0].next_attempt_at == now + timedelta(seconds=600)


def test_revoking_a_webhook_grant_sends_a_revoke_only_if_an_attempt_may_have_reached_it(engine, webhook, now,
                                                                                       model):
    untouched = make_grant(engine, model, policy=webhook, now=now)
    revoke(engine, untouched, policy=webhook, now=now)
    assert [(j.action, j.status) for j in jobs(engine, untouched)] == [
        (ProvisioningAction.GRANT, ProvisioningStatus.CANCELLED)]

    other = make_asset(engine, policy=webhook, now=now, name="Payments")
    tried = make_grant(engine, other, policy=webhook, now=now)
    [job] = jobs(engine, tried)
    with transaction(engine) as session:  # a worker claims it; the call may be on the wire
        assert provisioning.claim_webhook_job(session=session, job_id=job.id, now=now) is not None
        assert provisioning.claim_webhook_job(session=session, job_id=job.id, now=now) is None
    revoke(engine, tried, policy=webhook, now=now + MINUTE)
    [grant_job, revoke_job] = jobs(engine, tried)
    assert grant_job.status == ProvisioningStatus.CANCELLED
    # The revoke follows the attempt in flight: not before its claim would lapse.
    assert (revoke_job.action, revoke_job.status, revoke_job.next_attempt_at) == (
        ProvisioningAction.REVOKE, ProvisioningStatus.PENDING, now + provisioning.CLAIM_TTL)


def test_the_event_says_what_to_do_for_whom(engine, webhook, now, model):
    grant = make_grant(engine, model, policy=webhook, now=now, level="use", duration_hours=48)
    [job] = jobs(engine)
    with transaction(engine) as session:
        call = provisioning.claim_webhook_job(session=session, job_id=job.id, now=now + MINUTE)
    assert call.connector == "iam"
    assert call.event == {
        "event": "grant", "grant_id": grant.id, "asset": {"slug": "fraud-scorer", "kind": "model"},
        "grantee": REQUESTER, "level": "use", "expires_at": (now + MINUTE + timedelta(hours=48)).isoformat(),
        "request_id": grant.request_id, "occurred_at": now.isoformat(),
    }


def test_the_tier_decides_the_connector(engine, policy, now):
    data = policy_with(policy, connectors={"iam": IAM}).model_dump(mode="json")
    data["tiers"]["high"]["connector"] = "iam"
    high_only = type(policy).model_validate(data)
    assert high_only.connector_for(RiskTier.HIGH)[0] == "iam" and high_only.connector_for(RiskTier.MINIMAL) is None


# ---- races on PostgreSQL -------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_done_racing_a_revoke_leaves_one_consistent_story(pg_engine, policy, now, round_):
    from tests.workflows.test_access_concurrency import _race

    manual_policy = policy_with(policy, connectors={"by-hand": {"type": "manual"}}, provisioning_connector="by-hand")
    asset = make_asset(pg_engine, policy=manual_policy, now=now, name=f"Racy {round_}")
    grant = make_grant(pg_engine, asset, policy=manual_policy, now=now)
    [job] = jobs(pg_engine, grant)
    at = now + HOUR
    outcomes = _race(pg_engine, [
        lambda s: provisioning.confirm_job(session=s, job_id=job.id, actor=Actor(OWNER), now=at,
                                           policy=manual_policy),
        lambda s: access.revoke_grant(session=s, grant_id=grant.id, actor=Actor(OWNER), reason="Changed my mind",
                                      now=at, policy=manual_policy),
        lambda s: provisioning.confirm_job(session=s, job_id=job.id, actor=Actor(ADMIN, frozenset({"admins"})),
                                           now=at, policy=manual_policy),
    ])
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(e, AlreadyDecided) for e in errors), errors
    assert not isinstance(outcomes[1], BaseException)  # the revoke always wins its own race
    assert reload_grant(pg_engine, grant).status == GrantStatus.REVOKED
    stored = jobs(pg_engine, grant)
    if stored[0].status == ProvisioningStatus.SUCCEEDED:  # Done first: then revoked, and removed by hand too
        assert len(errors) == 1
        assert [(j.action, j.status) for j in stored[1:]] == [(ProvisioningAction.REVOKE, ProvisioningStatus.PENDING)]
    else:  # the revoke first: nothing to set up any more, both Done clicks refused
        assert len(errors) == 2 and stored[0].status == ProvisioningStatus.CANCELLED and len(stored) == 1
    assert chain_ok(pg_engine)
