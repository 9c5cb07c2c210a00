"""decide_request: one approver's click, recorded once; a losing click gets an ephemeral "already decided by"."""

from __future__ import annotations

import logging

import pytest

from tests.factories import (
    GOV1,
    GOV2,
    OWNER,
    REQUESTER,
    grants_of,
    last_outbox_id,
    make_asset,
    make_request,
    members,
    outbox_rows,
    policy_with,
    reload_request,
)
from tests.workers.conftest import run_message, take_messages
from workers.celery_app import make_celery
from workers.delivery import Outcome
from workers.tasks import (
    DECIDE_REQUEST,
    DELIVER_OUTBOX,
    decide,
    decide_request,
    deliver_batch,
    enqueue_decision,
)
from workflows.enums import GrantStatus, RequestStatus
from workflows.outbox import OutboxMethod
from workflows.settings import Settings

OWNER_DM = f"D{OWNER}"  # the fake Slack API's DM channel id for a user


@pytest.fixture
def request_(engine, ctx, policy, now):
    """A pending request whose one step the asset's owner approves, its messages already sent."""
    asset = make_asset(engine, policy=policy, now=now)
    before = last_outbox_id(engine)  # the asset's own messages are no concern here
    request = make_request(engine, asset, policy=policy, now=now, members_of=members())
    sent = deliver_batch(context=ctx, message_ids=[r.id for r in outbox_rows(engine, after_id=before)])
    assert sent == [Outcome.SENT] * 2  # the owner's approval request and the requester's receipt
    return request


def test_an_approval_grants_and_redraws_the_approvers_message(engine, ctx, fake, request_):
    assert [m["text"] for m in fake.messages(OWNER_DM)] == [f"approval_request #{request_.id} pending"]

    ids = decide(context=ctx, request_id=request_.id, approver_id=OWNER, outcome="approve", channel=OWNER_DM)

    assert reload_request(engine, request_).status == RequestStatus.APPROVED
    [grant] = grants_of(engine, request_)
    assert (grant.status, grant.grantee_id) == (GrantStatus.ACTIVE, REQUESTER)
    assert deliver_batch(context=ctx, message_ids=ids) == [Outcome.SENT] * len(ids)
    # The owner's request message is redrawn in place; the requester is told in a DM.
    assert [m["text"] for m in fake.messages(OWNER_DM)] == [f"approval_request #{request_.id} approved"]
    assert f"request_approved #{request_.id} approved" in [m["text"] for m in fake.messages(f"D{REQUESTER}")]
    assert fake.calls_to("chat.update")


def test_a_second_click_is_answered_ephemerally_and_changes_nothing(engine, ctx, fake, request_):
    first = decide(context=ctx, request_id=request_.id, approver_id=OWNER, outcome="approve", channel=OWNER_DM)
    deliver_batch(context=ctx, message_ids=first)
    before = last_outbox_id(engine)

    second = decide(context=ctx, request_id=request_.id, approver_id=OWNER, outcome="approve", channel=OWNER_DM)

    [row] = outbox_rows(engine, after_id=before)
    assert second == [row.id]
    assert (row.method, row.channel, row.user) == (OutboxMethod.EPHEMERAL, OWNER_DM, OWNER)
    assert row.payload == {"template": "decision_refused", "request_id": request_.id,
                           "message": "This request is already approved.", "decided_by": OWNER}
    assert len(grants_of(engine, request_)) == 1
    assert deliver_batch(context=ctx, message_ids=second) == [Outcome.SENT]
    call = fake.last("chat.postEphemeral")
    assert (call.args["channel"], call.args["user"]) == (OWNER_DM, OWNER)
    assert call.args["text"].endswith(f"| by {OWNER}")


def test_the_losing_approver_is_told_who_decided(engine, ctx, policy, now):
    either = policy_with(policy, approvers={"minimal": ["governance"]})
    asset = make_asset(engine, policy=either, now=now)
    request = make_request(engine, asset, policy=either, now=now, members_of=members())
    decide(context=ctx, request_id=request.id, approver_id=GOV1, outcome="approve", channel="DGOV1")
    before = last_outbox_id(engine)

    decide(context=ctx, request_id=request.id, approver_id=GOV2, outcome="approve", channel="DGOV2")

    [row] = outbox_rows(engine, after_id=before)
    assert (row.user, row.channel, row.payload["decided_by"]) == (GOV2, "DGOV2", GOV1)
    assert len(grants_of(engine, request)) == 1


def test_a_denial_ends_the_request_and_tells_the_requester(engine, ctx, fake, request_):
    ids = decide(context=ctx, request_id=request_.id, approver_id=OWNER, outcome="deny", reason="Not this quarter",
                 channel=OWNER_DM)

    stored = reload_request(engine, request_)
    assert (stored.status, stored.resolution_note) == (RequestStatus.DENIED, "Not this quarter")
    assert grants_of(engine, request_) == []
    deliver_batch(context=ctx, message_ids=ids)
    assert [m["text"] for m in fake.messages(OWNER_DM)] == [f"approval_request #{request_.id} denied"]


@pytest.mark.parametrize(("approver", "outcome", "reason", "message"), [
    (OWNER, "deny", "  ", "Say why you deny it."),
    ("U0STRANGER", "approve", "", "You are not an approver of this request."),
    (REQUESTER, "approve", "", "You cannot approve your own request."),
    (OWNER, "maybe", "", "Unknown decision 'maybe': approve or deny."),
])
def test_a_refused_click_is_answered_ephemerally(engine, ctx, request_, approver, outcome, reason, message):
    before = last_outbox_id(engine)

    ids = decide(context=ctx, request_id=request_.id, approver_id=approver, outcome=outcome, reason=reason,
                 channel="D0CLICK")

    [row] = outbox_rows(engine, after_id=before)
    assert ids == [row.id]
    assert (row.method, row.user, row.channel) == (OutboxMethod.EPHEMERAL, approver, "D0CLICK")
    assert row.payload == {"template": "decision_refused", "request_id": request_.id, "message": message,
                           "decided_by": ""}
    assert reload_request(engine, request_).status == RequestStatus.PENDING


def test_a_click_on_an_unknown_request_is_answered(engine, ctx):
    [row_id] = decide(context=ctx, request_id=424242, approver_id=OWNER, outcome="approve", channel=OWNER_DM)

    [row] = outbox_rows(engine)  # the answer is all that was written
    assert row.id == row_id
    assert row.payload["message"] == "No access request has id 424242."


def test_the_task_decides_and_enqueues_delivery(engine, ctx, settings, fake, request_, fresh_celery):
    app = make_celery(settings, context=ctx)

    ids = decide_request(request_.id, OWNER, "approve", channel=OWNER_DM)  # the task's function, in-process

    assert reload_request(engine, request_).status == RequestStatus.APPROVED
    [message] = take_messages(app)
    assert message.headers["task"] == DELIVER_OUTBOX
    assert message.decode()[0] == [ids]
    run_message(app, message)
    assert [m["text"] for m in fake.messages(OWNER_DM)] == [f"approval_request #{request_.id} approved"]


def test_enqueue_decision_carries_ids_only(settings, fresh_celery):
    app = make_celery(settings)

    assert enqueue_decision(7, OWNER, "deny", reason="No", channel=OWNER_DM) is True

    [message] = take_messages(app)
    assert message.headers["task"] == DECIDE_REQUEST
    args, kwargs, _ = message.decode()
    assert (args, kwargs) == ([], {"request_id": 7, "approver_id": OWNER, "outcome": "deny", "reason": "No",
                                   "channel": OWNER_DM})


def test_enqueue_decision_without_a_broker_says_so(tmp_path, caplog, fresh_celery):
    make_celery(Settings(_env_file=None, steward_home=tmp_path / "home", broker_url="redis://127.0.0.1:1/0"))
    caplog.set_level(logging.WARNING, logger="workers.tasks")

    assert enqueue_decision(7, OWNER, "approve") is False

    assert "was not recorded" in caplog.text
    assert "127.0.0.1:1" not in caplog.text
