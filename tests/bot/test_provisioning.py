"""Provisioning through Slack: with a manual connector the grantee hears access is being set up, the owner
gets a task with Done, and Done (the owner's or an admin's, nobody else's) makes the access active."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import yaml
from sqlmodel import select

from tests.bot.access_helpers import buttons, file_request, grant_row, slack_accepts, text_of
from tests.bot.conftest import GOVERNANCE, as_in_production, block_action, outbox, rendered
from tests.bot.test_ack import database_locked
from tests.factories import ADMIN, OTHER, OWNER, make_asset
from workflows.db import transaction
from workflows.enums import GrantStatus, ProvisioningAction, ProvisioningStatus
from workflows.models import Grant, ProvisioningJob
from workflows.policy import Policy, default_policy_text, parse_policy

HOUR = timedelta(hours=1)


@pytest.fixture
def bot_policy() -> Policy:
    """The bot tests' policy with every grant set up by hand by the asset's owner (overrides conftest's)."""
    data = yaml.safe_load(default_policy_text())
    data["groups"]["admins"] = [ADMIN]
    data["groups"]["governance"] = [GOVERNANCE]
    data["connectors"] = {"by-hand": {"type": "manual"}}
    data["provisioning_connector"] = "by-hand"
    return parse_policy(yaml.safe_dump(data))


@pytest.fixture
def approved(harness, engine, bot_policy, now):
    """OTHER asked for read access to an asset OWNER owns; OWNER clicked Approve. Returns (grant, job)."""
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    request = file_request(engine, asset, policy=bot_policy, now=now)
    harness.interact(block_action("access_approve", str(request.id), user=OWNER))
    assert harness.run_decisions() == ["decided"]
    with transaction(engine) as session:
        grant = session.exec(select(Grant).where(Grant.request_id == request.id)).one()
        job = session.exec(select(ProvisioningJob).where(ProvisioningJob.grant_id == grant.id)).one()
    return grant, job


def _job(engine, job_id: int) -> ProvisioningJob:
    with transaction(engine) as session:
        return session.get(ProvisioningJob, job_id)


def _done(harness, job_id, user=OWNER, value=None):
    return harness.interact(block_action("access_provision_done", value or str(job_id), user=user,
                                         response_url=harness.fake.response_url("task")))


def test_approval_says_access_is_being_set_up_and_gives_the_owner_a_task_with_done(harness, engine, approved, fake):
    grant, job = approved
    assert grant.status == GrantStatus.PROVISIONING and job.action == ProvisioningAction.GRANT
    [news] = outbox(engine, template="request_approved")
    text = text_of(rendered(engine, news))
    assert "was approved" in text and "being set up" in text and "It lasts until" not in text

    [task] = outbox(engine, template="provisioning_manual")
    assert (task.user, task.method) == (OWNER, "dm") and task.id in harness.enqueued
    content = rendered(engine, task)
    assert f"Please give <@{OTHER}> *read* access to" in text_of(content)
    [done] = buttons(content)
    assert (done["action_id"], done["value"]) == ("access_provision_done", str(job.id))
    assert slack_accepts(fake, content)

    [approver_dm] = outbox(engine, template="approval_request")
    redraws = [r for r in outbox(engine) if r.updates_id == approver_dm.id]
    assert "being set up by hand" in text_of(rendered(engine, redraws[-1]))


@pytest.mark.parametrize("user", [OWNER, ADMIN], ids=["owner", "admin"])
def test_done_makes_the_access_active_and_redraws_the_task(harness, engine, approved, now, fake, user):
    grant, job = approved
    harness.ctx.clock = lambda: now + 2 * HOUR

    response = _done(harness, job.id, user=user)

    assert response.status == 200
    stored = grant_row(engine, grant.id)
    assert (stored.status, stored.granted_at) == (GrantStatus.ACTIVE, now + 2 * HOUR)
    assert stored.expires_at == now + 2 * HOUR + timedelta(hours=24)
    done = _job(engine, job.id)
    assert (done.status, done.confirmed_by) == (ProvisioningStatus.SUCCEEDED, user)
    assert harness.replies() == []  # the answer is the redrawn task itself

    [task] = outbox(engine, template="provisioning_manual")
    redraws = [r for r in outbox(engine) if r.updates_id == task.id]
    assert redraws and {r.id for r in redraws} <= set(harness.enqueued)
    content = rendered(engine, redraws[-1])
    assert buttons(content) == [] and f"confirmed by <@{user}>" in text_of(content)
    [ready] = outbox(engine, template="grant_active")
    assert ready.user == OTHER and "is set up and ready" in text_of(rendered(engine, ready))
    [news] = outbox(engine, template="request_approved")
    assert "It lasts until" in text_of(rendered(engine, news))

    # /steward access now lists it, with Release.
    harness.command("access", user=OTHER)
    assert "*Your access* (1)" in text_of(harness.replies()[-1])


@pytest.mark.parametrize("user", [OTHER, GOVERNANCE], ids=["grantee", "governance"])
def test_done_by_anyone_else_is_refused(harness, engine, approved, user):
    grant, job = approved
    _done(harness, job.id, user=user)
    reply = harness.replies()[-1]
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False
    assert "Only the owner of churn-events or a Steward admin can confirm this change." in reply["text"]
    assert grant_row(engine, grant.id).status == GrantStatus.PROVISIONING
    assert _job(engine, job.id).status == ProvisioningStatus.PENDING
    assert outbox(engine, template="grant_active") == []


def test_a_second_done_is_told_who_confirmed_first(harness, engine, approved):
    _, job = approved
    _done(harness, job.id, user=OWNER)
    _done(harness, job.id, user=ADMIN)
    assert f"Already decided by <@{OWNER}>." in harness.last_reply_text()
    assert len(outbox(engine, template="grant_active")) == 1


@pytest.mark.parametrize("value", ["not-a-number", "4242"])
def test_a_forged_done_is_answered(harness, engine, approved, value):
    _done(harness, None, value=value)
    text = harness.last_reply_text()
    assert "no longer points at a provisioning task" in text or "No provisioning task has id 4242" in text


def test_done_acks_before_touching_the_database(harness, engine, approved):
    _, job = approved
    async_harness = as_in_production(harness)
    with database_locked(engine):
        response = _done(async_harness, job.id)
        assert response.status == 200, "Slack got its ack although the database was locked"
    waited = threading.Event()
    for _ in range(200):
        if _job(engine, job.id).status == ProvisioningStatus.SUCCEEDED:
            break
        waited.wait(0.05)
    assert _job(engine, job.id).status == ProvisioningStatus.SUCCEEDED


def test_revoking_it_asks_the_owner_to_remove_it_too(harness, engine, approved, bot_policy):
    grant, job = approved
    _done(harness, job.id, user=OWNER)
    from workflows import access
    from workflows.inventory import Actor

    with transaction(engine) as session:
        access.revoke_grant(session=session, grant_id=grant.id, actor=Actor(OWNER), reason="Left <the> team",
                            now=harness.ctx.clock(), policy=bot_policy)
    tasks = outbox(engine, template="provisioning_manual")
    assert len(tasks) == 2
    content = rendered(engine, tasks[-1])
    assert f"Please remove <@{OTHER}>'s *read* access" in text_of(content) and "Left &lt;the&gt; team" in text_of(content)
    [done] = buttons(content)
    _done(harness, int(done["value"]), user=OWNER)
    assert "confirmed by" in text_of(rendered(engine, [r for r in outbox(engine) if r.updates_id == tasks[-1].id][-1]))


def test_a_webhook_that_gives_up_alerts_the_owner_shows_on_the_request_and_done_by_hand_activates(
        harness, engine, bot_policy, now, fake):
    from workflows import provisioning

    data = bot_policy.model_dump(mode="json")
    data["connectors"] = {"iam": {"type": "webhook", "url": "https://iam.example.com/hook",
                                  "secret_env": "STEWARD_IAM_SECRET"}}
    data["provisioning_connector"] = "iam"
    harness.ctx.policy = type(bot_policy).model_validate(data)
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    request = file_request(engine, asset, policy=harness.ctx.policy, now=now)
    harness.interact(block_action("access_approve", str(request.id), user=OWNER))
    assert harness.run_decisions() == ["decided"]
    with transaction(engine) as session:
        job = session.exec(select(ProvisioningJob)).one()
    assert harness.provisioned == []  # the stand-in decision runner enqueues nothing; the sweep would

    # Done while Steward is still trying is refused.
    _done(harness, job.id, user=OWNER)
    assert "still sending this change to iam" in harness.last_reply_text()

    for attempt in range(provisioning.MAX_ATTEMPTS):
        with transaction(engine) as session:
            provisioning.complete_job(session=session, job_id=job.id, ok=False, error="http_503 <b>",
                                      now=now + attempt * HOUR)
    [alert] = outbox(engine, template="provisioning_failed")
    content = rendered(engine, alert)
    assert alert.user == OWNER and slack_accepts(fake, content)
    assert "could not give" in text_of(content) and "after 8 attempts" in text_of(content)
    assert "http_503 &lt;b&gt;" in text_of(content)  # the error is escaped
    [done] = buttons(content)
    assert (done["action_id"], done["value"]) == ("access_provision_done", str(job.id))
    [approver_dm] = outbox(engine, template="approval_request")
    shown = text_of(rendered(engine, approver_dm))
    assert "failed after 8 attempts" in shown and "has been told" in shown
    [news] = outbox(engine, template="request_approved")
    assert "setting up the access failed" in text_of(rendered(engine, news))

    _done(harness, job.id, user=OWNER)

    assert _job(engine, job.id).confirmed_by == OWNER
    redraws = [r for r in outbox(engine) if r.updates_id == alert.id]
    redrawn = text_of(rendered(engine, redraws[-1]))
    assert buttons(rendered(engine, redraws[-1])) == [] and f"confirmed by <@{OWNER}>" in redrawn
    assert f"Set up by hand, confirmed by <@{OWNER}>" in text_of(rendered(engine, approver_dm))
