"""What the chaos run (tests/chaos) found and the product now does: a click is recorded by the bot itself,
a decision waits out a database outage, a post cut off after it reached Slack is not posted again, and
the Slack timeout, the outbox claim and the broker's redelivery follow the settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import create_engine

from tests.factories import OWNER, make_asset, make_request, members, reload_request
from tests.workers.conftest import add, take_messages
from workers.celery_app import make_celery
from workers.delivery import IN_FLIGHT, METADATA_EVENT, Outcome, deliver
from workers.slack_client import make_slack_client
from workers.tasks import DECIDE_REQUEST, DELIVER_OUTBOX, decide_now, decide_request
from workflows.db import DatabaseUnavailable, transaction
from workflows.enums import RequestStatus
from workflows.models import OutboxMessage
from workflows.settings import Settings

OWNER_DM = f"D{OWNER}"


@pytest.fixture
def request_(engine, ctx, policy, now):
    """A pending request whose one step the asset's owner approves."""
    asset = make_asset(engine, policy=policy, now=now)
    return make_request(engine, asset, policy=policy, now=now, members_of=members())


def test_a_click_is_recorded_at_once_and_only_its_messages_are_queued(engine, ctx, settings, request_,
                                                                      fresh_celery):
    app = make_celery(settings, context=ctx)

    assert decide_now(context=ctx, request_id=request_.id, approver_id=OWNER, outcome="approve",
                      channel=OWNER_DM) is True

    # In the database before the listener returns: no task carries the click, so none can lose it.
    assert reload_request(engine, request_).status == RequestStatus.APPROVED
    assert [m.headers["task"] for m in take_messages(app)] == [DELIVER_OUTBOX]


def test_with_the_database_away_the_click_goes_to_a_worker(engine, ctx, settings, request_, fresh_celery):
    app = make_celery(settings, context=ctx)
    away = replace(ctx, engine=create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none",
                                             connect_args={"connect_timeout": 1}))

    assert decide_now(context=away, request_id=request_.id, approver_id=OWNER, outcome="deny", reason="No",
                      channel=OWNER_DM) is True

    [message] = take_messages(app)
    assert message.headers["task"] == DECIDE_REQUEST
    assert message.decode()[1] == {"request_id": request_.id, "approver_id": OWNER, "outcome": "deny",
                                   "reason": "No", "channel": OWNER_DM}
    assert reload_request(engine, request_).status == RequestStatus.PENDING


def test_a_queued_decision_retries_while_the_database_is_away():
    # Celery's autoretry: the task is published again, seconds later, instead of failing the click.
    assert DatabaseUnavailable in decide_request.autoretry_for
    assert decide_request.max_retries >= 10 and decide_request.retry_backoff_max <= 30


def test_the_slack_client_times_out_as_configured(tmp_path):
    settings = Settings(_env_file=None, steward_home=tmp_path, slack_timeout_seconds=2.5)
    assert make_slack_client(settings).timeout == 2.5
    assert make_slack_client(Settings(_env_file=None, steward_home=tmp_path)).timeout == 15


def test_an_outbox_claim_lasts_as_configured(engine, context, now):
    row_id = add(engine, now, channel="C1")
    seen = []

    def render(session, payload):
        # The claim is committed before rendering: the row shows it while it is being sent.
        seen.append(session.get(OutboxMessage, row_id).next_attempt_at)
        return {"text": payload["text"]}

    settings = context.settings.model_copy(update={"outbox_claim_seconds": 30})
    assert deliver(context=replace(context, settings=settings, renderer=render), message_id=row_id) is Outcome.SENT
    assert [t.replace(tzinfo=now.tzinfo) for t in seen] == [now + timedelta(seconds=30)]


def test_the_broker_redelivers_a_dead_workers_task_as_configured(tmp_path, fresh_celery):
    app = make_celery(Settings(_env_file=None, steward_home=tmp_path, broker_url="redis://127.0.0.1:6379/15",
                               broker_visibility_timeout_seconds=45))
    assert app.conf.broker_transport_options == {"visibility_timeout": 45}


# ---- a send cut off after it reached Slack is not posted again --------------------------------------


def stored(engine, message_id: int) -> OutboxMessage:
    """The outbox row as stored now."""
    with transaction(engine) as session:
        return session.get(OutboxMessage, message_id)


def stage(engine, message_id: int, *, last_error: str) -> None:
    """Leave the row as an earlier attempt would have: due again, with this error."""
    with transaction(engine) as session:
        row = session.get(OutboxMessage, message_id)
        row.last_error = last_error
        session.add(row)


def test_every_post_carries_its_outbox_id(engine, context, fake, now):
    row_id = add(engine, now, channel="C1")

    assert deliver(context=context, message_id=row_id) is Outcome.SENT

    assert fake.last("chat.postMessage").args["metadata"] == {"event_type": METADATA_EVENT,
                                                             "event_payload": {"outbox_id": row_id}}
    assert stored(engine, row_id).last_error == ""


@pytest.mark.parametrize("left_by", [IN_FLIGHT, "connection_error: TimeoutError"])
def test_a_send_that_landed_before_it_was_cut_off_is_not_posted_again(engine, context, client, fake, now, left_by):
    row_id = add(engine, now, channel="C1", text="once")
    # The earlier attempt reached Slack; then its worker died (IN_FLIGHT) or its answer timed out.
    landed = client.chat_postMessage(channel="C1", text="once", metadata={
        "event_type": METADATA_EVENT, "event_payload": {"outbox_id": row_id}})
    client.chat_postMessage(channel="C1", text="someone else's", metadata={
        "event_type": METADATA_EVENT, "event_payload": {"outbox_id": row_id + 1}})
    stage(engine, row_id, last_error=left_by)

    assert deliver(context=context, message_id=row_id) is Outcome.SENT

    assert len(fake.calls_to("chat.postMessage")) == 2  # the two above: nothing posted again
    assert (stored(engine, row_id).sent_channel, stored(engine, row_id).sent_ts) == ("C1", landed["ts"])


@pytest.mark.parametrize("left_by", [IN_FLIGHT, "connection_error: TimeoutError"])
def test_a_send_that_never_landed_is_posted_once(engine, context, fake, now, left_by):
    row_id = add(engine, now, channel="C1")
    stage(engine, row_id, last_error=left_by)

    assert deliver(context=context, message_id=row_id) is Outcome.SENT

    assert len(fake.calls_to("conversations.history")) == 1
    assert [m["text"] for m in fake.messages("C1")] == ["hello"]


def test_a_clean_failure_is_not_looked_up(engine, context, fake, now):
    row_id = add(engine, now, channel="C1")
    stage(engine, row_id, last_error="http_500")  # Slack answered: the request was not carried out

    assert deliver(context=context, message_id=row_id) is Outcome.SENT
    assert fake.calls_to("conversations.history") == []


def test_without_the_history_scope_it_is_sent_anyway(engine, context, fake, now):
    row_id = add(engine, now, channel="C1")
    stage(engine, row_id, last_error=IN_FLIGHT)
    fake.fail_next("conversations.history", error="missing_scope")

    assert deliver(context=context, message_id=row_id) is Outcome.SENT
    assert len(fake.messages("C1")) == 1
