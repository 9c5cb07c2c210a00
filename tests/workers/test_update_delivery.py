"""Delivery of "update" outbox rows: chat.update of the message an earlier row was sent as, redrawn from state."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from tests.workers.conftest import add, load
from workers.delivery import CLAIM_TTL, UPDATE_WAIT, Outcome, deliver
from workers.tasks import deliver_batch
from workflows.db import transaction
from workflows.models import OutboxMessage
from workflows.outbox import OutboxMethod, add_message


class Board:
    """Stored state the renderer draws from, as the real renderer draws from the request's row."""

    def __init__(self) -> None:
        self.status = "pending"

    def render(self, session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload's text with the current status, in text and blocks."""
        text = f"{payload['text']}: {self.status}"
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


@pytest.fixture
def board() -> Board:
    return Board()


@pytest.fixture
def ctx(context, board):
    """The worker context with the state-drawing renderer."""
    return replace(context, renderer=board.render)


def add_update(engine: Engine, now: datetime, updates_id: int | None) -> int:
    """Commit one update row (its own payload names no content: the original's is drawn) and return its id."""
    with transaction(engine) as session:
        return add_message(session=session, method=OutboxMethod.UPDATE, updates_id=updates_id, now=now,
                           payload={"template": "redraw"}).id


def set_row(engine: Engine, message_id: int, **values: Any) -> None:
    """Change stored columns of an outbox row (to stage a state delivery would reach more slowly)."""
    with transaction(engine) as session:
        row = session.get(OutboxMessage, message_id)
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)


@pytest.mark.parametrize(("method", "where", "slack_channel"), [
    (OutboxMethod.POST, {"channel": "C1"}, "C1"),
    (OutboxMethod.DM, {"user": "U1"}, "DU1"),
])
def test_an_update_redraws_the_original_in_place(engine, ctx, fake, board, now, method, where, slack_channel):
    original = add(engine, now, method, text="Request #7", **where)
    assert deliver(context=ctx, message_id=original) == Outcome.SENT
    assert [m["text"] for m in fake.messages(slack_channel)] == ["Request #7: pending"]
    board.status = "approved by <@U2>"
    update_id = add_update(engine, now, original)

    assert deliver(context=ctx, message_id=update_id) == Outcome.SENT

    [message] = fake.messages(slack_channel)  # the same message, changed; nothing new posted
    assert message["text"] == "Request #7: approved by <@U2>"
    assert message["blocks"][0]["text"]["text"] == "Request #7: approved by <@U2>"
    assert "edited" in message
    stored = load(engine, original)
    call = fake.last("chat.update")
    assert (call.args["channel"], call.args["ts"]) == (stored.sent_channel, stored.sent_ts)
    row = load(engine, update_id)
    assert (row.sent_at, row.sent_channel, row.sent_ts, row.attempts) == (now, slack_channel, stored.sent_ts, 1)
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_an_update_waits_while_the_original_is_unsent(engine, ctx, fake, board, clock, now):
    original = add(engine, now, channel="C1", text="Request #7")
    update_id = add_update(engine, now, original)

    assert deliver(context=ctx, message_id=update_id) == Outcome.WAITING

    assert fake.calls == []
    row = load(engine, update_id)
    assert (row.sent_at, row.attempts) == (None, 0)  # waiting is not a failed attempt
    assert row.next_attempt_at == now + UPDATE_WAIT
    assert row.last_error == f"waiting_for_original: {original}"

    board.status = "approved"
    assert deliver(context=ctx, message_id=original) == Outcome.SENT  # drawn from state already
    assert deliver(context=ctx, message_id=update_id) == Outcome.NOT_DUE
    clock.advance(seconds=UPDATE_WAIT.total_seconds())
    assert deliver(context=ctx, message_id=update_id) == Outcome.SENT

    assert [m["text"] for m in fake.messages("C1")] == ["Request #7: approved"]
    assert len(fake.calls_to("chat.update")) == 1


def test_an_update_waits_no_sooner_than_the_originals_own_next_attempt(engine, ctx, fake, now):
    original = add(engine, now, channel="C1")
    fake.fail_next("chat.postMessage", retry_after=120)
    assert deliver(context=ctx, message_id=original) == Outcome.RATE_LIMITED
    update_id = add_update(engine, now, original)

    assert deliver(context=ctx, message_id=update_id) == Outcome.WAITING

    assert load(engine, update_id).next_attempt_at == now + timedelta(seconds=120)
    assert fake.calls_to("chat.update") == []


def test_an_update_gives_up_when_its_original_gave_up(engine, ctx, fake, clock, now):
    original = add(engine, now, channel="CGONE")
    update_id = add_update(engine, now, original)
    assert deliver(context=ctx, message_id=update_id) == Outcome.WAITING
    # The original has since failed for good (see test_delivery for how it gets there).
    set_row(engine, original, next_attempt_at=None, attempts=10, last_error="channel_not_found")
    clock.advance(seconds=UPDATE_WAIT.total_seconds())

    assert deliver(context=ctx, message_id=update_id) == Outcome.GAVE_UP

    row = load(engine, update_id)
    assert (row.sent_at, row.next_attempt_at) == (None, None)
    assert row.last_error == f"update_target_gave_up: {original}"
    assert fake.calls == []


def test_an_ephemeral_message_can_never_be_updated(engine, ctx, fake, now):
    original = add(engine, now, OutboxMethod.EPHEMERAL, channel="C1", user="U1")
    assert deliver(context=ctx, message_id=original) == Outcome.SENT
    update_id = add_update(engine, now, original)

    assert deliver(context=ctx, message_id=update_id) == Outcome.GAVE_UP

    assert fake.calls_to("chat.update") == []
    row = load(engine, update_id)
    assert row.last_error == f"update_target_not_updatable: ephemeral {original}"
    assert row.next_attempt_at is None


@pytest.mark.parametrize(("target", "error"), [(None, "update_without_target"),
                                                (424242, "update_target_missing: 424242")])
def test_an_update_of_nothing_gives_up_at_once(engine, ctx, fake, now, target, error):
    update_id = add_update(engine, now, target)

    assert deliver(context=ctx, message_id=update_id) == Outcome.GAVE_UP

    assert fake.calls == []
    assert load(engine, update_id).last_error == error


def test_pending_updates_of_one_message_are_sent_once(engine, ctx, fake, board, now):
    original = add(engine, now, channel="C1", text="Request #7")
    deliver(context=ctx, message_id=original)
    updates = [add_update(engine, now, original) for _ in range(3)]
    other_original = add(engine, now, channel="C2", text="Request #8")
    deliver(context=ctx, message_id=other_original)
    other_update = add_update(engine, now, other_original)
    board.status = "approved"

    outcomes = deliver_batch(context=ctx, message_ids=[*updates, other_update])

    assert outcomes == [Outcome.SENT, Outcome.ALREADY_SENT, Outcome.ALREADY_SENT, Outcome.SENT]
    assert [call.args["channel"] for call in fake.calls_to("chat.update")] == ["C1", "C2"]
    assert [m["text"] for m in fake.messages()] == ["Request #7: approved", "Request #8: approved"]
    for superseded in updates[1:]:
        row = load(engine, superseded)
        assert row.sent_at == now and row.next_attempt_at is None
        assert row.last_error == f"superseded by outbox message {updates[0]}"


def test_an_update_being_sent_by_another_worker_is_not_superseded(engine, ctx, fake, now):
    original = add(engine, now, channel="C1", text="Request #7")
    deliver(context=ctx, message_id=original)
    mine, theirs = add_update(engine, now, original), add_update(engine, now, original)
    set_row(engine, theirs, next_attempt_at=now + CLAIM_TTL)  # as another worker's claim leaves it

    assert deliver(context=ctx, message_id=mine) == Outcome.SENT

    row = load(engine, theirs)
    assert row.sent_at is None  # it keeps its own outcome: the other worker records it
    assert row.last_error == ""


def test_slack_errors_on_update_are_handled_as_for_other_rows(engine, ctx, fake, now):
    original = add(engine, now, channel="C1")
    deliver(context=ctx, message_id=original)
    limited, gone = add_update(engine, now, original), add_update(engine, now, original)
    fake.fail_next("chat.update", retry_after=9)

    assert deliver(context=ctx, message_id=limited) == Outcome.RATE_LIMITED

    row = load(engine, limited)
    assert (row.next_attempt_at, row.attempts, row.last_error) == (now + timedelta(seconds=9), 1, "ratelimited")

    fake.fail_next("chat.update", error="message_not_found")
    assert deliver(context=ctx, message_id=gone) == Outcome.FAILED
    assert load(engine, gone).last_error == "message_not_found"
