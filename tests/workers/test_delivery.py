"""Delivery of outbox rows to the fake Slack API, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy.exc import OperationalError

from tests.workers.conftest import add, load
from workers.delivery import CLAIM_TTL, MAX_ATTEMPTS, PERMANENT_BACKOFF, Outcome, deliver
from workflows.db import DatabaseUnavailable, transaction
from workflows.outbox import OutboxMethod, due_message_ids


def test_post_goes_to_the_channel_and_slacks_answer_is_stored(engine, context, fake, now):
    message_id = add(engine, now, OutboxMethod.POST, channel="C1", text="Registered *churn*")

    outcome = deliver(context=context, message_id=message_id)

    assert outcome == Outcome.SENT
    [message] = fake.messages("C1")
    assert message["text"] == "Registered *churn*"
    assert message["blocks"][0]["text"]["text"] == "Registered *churn*"
    row = load(engine, message_id)
    assert (row.sent_at, row.sent_channel, row.sent_ts) == (now, "C1", message["ts"])
    assert row.next_attempt_at is None
    assert row.attempts == 1


def test_dm_opens_the_conversation_then_posts_there(engine, context, fake, now):
    message_id = add(engine, now, OutboxMethod.DM, user="U1")

    assert deliver(context=context, message_id=message_id) == Outcome.SENT

    assert fake.last("conversations.open").args["users"] == "U1"
    [message] = fake.messages("DU1")
    row = load(engine, message_id)
    assert (row.sent_channel, row.sent_ts) == ("DU1", message["ts"])


def test_ephemeral_goes_to_the_user_in_the_channel(engine, context, fake, now):
    message_id = add(engine, now, OutboxMethod.EPHEMERAL, channel="C1", user="U1")

    assert deliver(context=context, message_id=message_id) == Outcome.SENT

    call = fake.last("chat.postEphemeral")
    assert (call.args["channel"], call.args["user"], call.args["text"]) == ("C1", "U1", "hello")
    assert fake.messages() == []  # ephemeral messages are not stored in the channel
    row = load(engine, message_id)
    assert row.sent_channel == "C1"
    assert row.sent_ts  # Slack's message_ts, the only stamp an ephemeral message gets
    assert row.sent_at == now


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
def test_ephemeral_falls_back_to_a_dm(engine, context, fake, now, error):
    message_id = add(engine, now, OutboxMethod.EPHEMERAL, channel="C1", user="U1")
    fake.fail_next("chat.postEphemeral", error=error)

    assert deliver(context=context, message_id=message_id) == Outcome.SENT

    assert fake.last("chat.postEphemeral").failed is True
    [message] = fake.messages("DU1")
    assert message["text"] == "hello"
    assert load(engine, message_id).sent_channel == "DU1"


def test_ephemeral_without_a_channel_is_a_dm(engine, context, fake, now):
    message_id = add(engine, now, OutboxMethod.EPHEMERAL, user="U1")

    assert deliver(context=context, message_id=message_id) == Outcome.SENT

    assert fake.calls_to("chat.postEphemeral") == []
    assert len(fake.messages("DU1")) == 1


def test_ephemeral_does_not_fall_back_on_other_errors(engine, context, fake, now):
    message_id = add(engine, now, OutboxMethod.EPHEMERAL, channel="C1", user="U1")
    fake.fail_next("chat.postEphemeral", error="invalid_blocks")

    assert deliver(context=context, message_id=message_id) == Outcome.FAILED

    assert fake.calls_to("conversations.open") == []
    assert load(engine, message_id).last_error == "invalid_blocks"


def test_rate_limit_waits_exactly_retry_after(engine, context, fake, clock, now):
    message_id = add(engine, now, channel="C1")
    fake.fail_next("chat.postMessage", retry_after=7)

    assert deliver(context=context, message_id=message_id) == Outcome.RATE_LIMITED

    row = load(engine, message_id)
    assert row.next_attempt_at == now + timedelta(seconds=7)
    assert (row.sent_at, row.attempts, row.last_error) == (None, 1, "ratelimited")
    clock.advance(seconds=6)
    assert deliver(context=context, message_id=message_id) == Outcome.NOT_DUE
    clock.advance(seconds=1)
    assert deliver(context=context, message_id=message_id) == Outcome.SENT
    assert len(fake.calls_to("chat.postMessage")) == 2
    assert len(fake.messages("C1")) == 1


def test_server_error_backs_off(engine, context, fake, now):
    message_id = add(engine, now, channel="C1")
    fake.fail_next("chat.postMessage", status=500)

    assert deliver(context=context, message_id=message_id) == Outcome.RETRYING

    row = load(engine, message_id)
    assert row.next_attempt_at == now + timedelta(seconds=2)  # workflows.outbox's first backoff
    assert row.last_error == "http_500"
    assert row.sent_at is None


def test_unreachable_slack_backs_off(engine, context, now):
    message_id = add(engine, now, channel="C1")
    nowhere = WebClient(base_url="http://127.0.0.1:9/api/", token="xoxb-test", retry_handlers=[], timeout=5)

    assert deliver(context=replace(context, client=nowhere), message_id=message_id) == Outcome.RETRYING

    row = load(engine, message_id)
    assert row.last_error.startswith("connection_error")
    assert row.next_attempt_at == now + timedelta(seconds=2)


def test_invalid_auth_is_recorded_and_the_token_is_never_logged(engine, context, fake, now, caplog):
    secret = "xoxb-0000-revoked-s3cr3t-token"
    revoked = WebClient(base_url=fake.url, token=secret, retry_handlers=[])
    message_id = add(engine, now, channel="C1")
    caplog.set_level(logging.DEBUG)  # every logger, slack_sdk's request logs included

    assert deliver(context=replace(context, client=revoked), message_id=message_id) == Outcome.FAILED

    row = load(engine, message_id)
    assert row.last_error == "invalid_auth"
    assert row.next_attempt_at == now + PERMANENT_BACKOFF
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "workers.delivery"]
    assert errors and "invalid_auth" in errors[0].getMessage()
    assert fake.last("chat.postMessage").token == secret  # the token really was used...
    assert secret not in caplog.text  # ...and never written to a log
    assert "s3cr3t" not in caplog.text


def test_a_permanent_error_is_retried_slowly_then_given_up(engine, context, fake, clock, now):
    message_id = add(engine, now, channel="CGONE")
    fake.fail_next("chat.postMessage", error="channel_not_found", times=MAX_ATTEMPTS)

    outcomes = []
    for _ in range(MAX_ATTEMPTS):
        outcomes.append(deliver(context=context, message_id=message_id))
        if outcomes[-1] == Outcome.FAILED:
            assert load(engine, message_id).next_attempt_at == clock.now + PERMANENT_BACKOFF
        clock.advance(seconds=PERMANENT_BACKOFF.total_seconds())

    assert outcomes == [Outcome.FAILED] * (MAX_ATTEMPTS - 1) + [Outcome.GAVE_UP]
    row = load(engine, message_id)
    assert (row.attempts, row.next_attempt_at, row.sent_at) == (MAX_ATTEMPTS, None, None)
    assert row.last_error == "channel_not_found"
    assert deliver(context=context, message_id=message_id) == Outcome.NOT_DUE
    assert len(fake.calls_to("chat.postMessage")) == MAX_ATTEMPTS
    with transaction(engine) as session:
        assert message_id not in due_message_ids(session=session, now=clock.now + timedelta(days=365))


def test_user_not_found_for_a_dm_is_permanent(engine, context, fake, now):
    message_id = add(engine, now, OutboxMethod.DM, user="UGONE")
    fake.fail_next("conversations.open", error="user_not_found")

    assert deliver(context=context, message_id=message_id) == Outcome.FAILED

    assert fake.calls_to("chat.postMessage") == []
    assert load(engine, message_id).last_error == "user_not_found"


def test_an_unknown_method_is_a_permanent_failure(engine, context, fake, now):
    message_id = add(engine, now, "carrier-pigeon", channel="C1")

    assert deliver(context=context, message_id=message_id) == Outcome.FAILED

    assert fake.calls == []
    assert load(engine, message_id).last_error == "unsupported_method: carrier-pigeon"


def test_a_render_error_is_recorded_and_nothing_is_sent(engine, context, fake, now):
    message_id = add(engine, now, channel="C1")

    def broken(session, payload):
        raise KeyError("asset_id")

    assert deliver(context=context, message_id=message_id, renderer=broken) == Outcome.FAILED

    assert fake.calls == []
    assert load(engine, message_id).last_error == "render_error: KeyError"


def test_delivering_the_same_row_twice_sends_once(engine, context, fake, now):
    message_id = add(engine, now, channel="C1")

    first = deliver(context=context, message_id=message_id)
    second = deliver(context=context, message_id=message_id)

    assert (first, second) == (Outcome.SENT, Outcome.ALREADY_SENT)
    assert len(fake.calls_to("chat.postMessage")) == 1
    assert load(engine, message_id).attempts == 1


def test_a_missing_row_is_reported(engine, context, fake):
    assert deliver(context=context, message_id=424242) == Outcome.MISSING
    assert fake.calls == []


def test_concurrent_workers_send_each_row_once(engine, context, fake, now):
    ids = [add(engine, now, channel="C1", text=f"m{i}") for i in range(10)]
    workers = 4
    start = threading.Barrier(workers)

    def worker(_: int) -> list[str]:
        start.wait()
        return [deliver(context=context, message_id=message_id) for message_id in ids]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(worker, range(workers)))

    for column in zip(*results, strict=True):
        assert sorted(column).count(Outcome.SENT) == 1, column
    assert sorted(call.args["text"] for call in fake.calls_to("chat.postMessage")) == sorted(
        f"m{i}" for i in range(10))
    assert all(load(engine, message_id).attempts == 1 for message_id in ids)


def test_a_claim_left_by_a_dead_worker_lapses(engine, context, fake, clock, now):
    message_id = add(engine, now, channel="C1")

    def database_died(session, payload):
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    with pytest.raises(DatabaseUnavailable):
        deliver(context=context, message_id=message_id, renderer=database_died)

    assert deliver(context=context, message_id=message_id) == Outcome.NOT_DUE  # still claimed
    clock.advance(seconds=CLAIM_TTL.total_seconds())
    assert deliver(context=context, message_id=message_id) == Outcome.SENT
    assert len(fake.messages("C1")) == 1


def test_the_default_renderer_is_bot_views_messages(engine, context, fake, now, monkeypatch):
    module = types.ModuleType("bot.views.messages")
    module.render_outbox = lambda session, payload: {"text": f"rendered {payload['text']}"}
    monkeypatch.setitem(sys.modules, "bot.views.messages", module)
    message_id = add(engine, now, channel="C1")

    assert deliver(context=replace(context, renderer=None), message_id=message_id) == Outcome.SENT

    assert fake.messages("C1")[0]["text"] == "rendered hello"
