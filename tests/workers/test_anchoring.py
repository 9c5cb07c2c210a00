"""The daily anchor: the sweep enqueues it at most once a day, run_due posts it to the audit channel through
the outbox, and delivery stores Slack's channel and ts on the anchor."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.views.messages import render_outbox
from tests.workflows.test_audit import _append, _entries
from workers.delivery import Outcome
from workers.tasks import OUTBOX, DueKind, deliver_batch, run_due_item, sweep_once
from workflows.anchors import verify_log
from workflows.db import transaction
from workflows.models import AuditAnchor, OutboxMessage
from workflows.policy import Policy

AUDIT_CHANNEL = "C0AUDIT01"
ANCHOR = DueKind.AUDIT_ANCHOR.value
DAY = timedelta(hours=24)


@pytest.fixture
def ctx(context, policy):
    """The worker context with an audit channel in the policy and the real renderer."""
    data = policy.model_dump(mode="json")
    data["channels"]["audit"] = AUDIT_CHANNEL
    return replace(context, renderer=render_outbox, policy=Policy.model_validate(data))


def sweep_at(ctx, clock, at) -> tuple[dict[str, int], list[tuple[str, int]], list[list[int]]]:
    """One sweep at `at`: its counts, the due work and the outbox batches it enqueued."""
    clock.now = at
    due: list[tuple[str, int]] = []
    batches: list[list[int]] = []
    counts = sweep_once(context=ctx, enqueue_due=lambda kind, item_id: due.append((kind, item_id)),
                        enqueue_delivery=batches.append, enqueue_provision=lambda job_id: None)
    return counts, due, batches


def anchors(engine) -> list[AuditAnchor]:
    """Every anchor, oldest first."""
    with transaction(engine) as session:
        return list(session.exec(select(AuditAnchor).order_by(AuditAnchor.id)).all())


def sweep_and_run(ctx, clock, at) -> list[int]:
    """A sweep at `at`, then the anchor work it enqueued, as a worker would; the outbox ids written."""
    _, due, _ = sweep_at(ctx, clock, at)
    ids: list[int] = []
    for kind, item_id in due:
        if kind == ANCHOR:
            ids += run_due_item(context=ctx, kind=kind, item_id=item_id)
    return ids


def test_the_sweep_anchors_at_most_once_a_day(engine, ctx, clock, now):
    _append(engine, now - timedelta(hours=2), 3)

    counts, due, _ = sweep_at(ctx, clock, now)
    assert (counts[ANCHOR], due) == (1, [(ANCHOR, 0)])
    first = run_due_item(context=ctx, kind=ANCHOR, item_id=0)
    assert len(first) == 1
    # A copy of the task that ran late (the sweep enqueued it again meanwhile) anchors nothing more.
    assert run_due_item(context=ctx, kind=ANCHOR, item_id=0) == []

    for later in (timedelta(minutes=1), timedelta(hours=12), DAY - timedelta(minutes=1)):
        counts, due, _ = sweep_at(ctx, clock, now + later)
        assert (counts[ANCHOR], due) == (0, []), later
    _append(engine, now + DAY - timedelta(minutes=1), 2)

    assert len(sweep_and_run(ctx, clock, now + DAY)) == 1
    assert sweep_and_run(ctx, clock, now + DAY + timedelta(minutes=1)) == []
    assert [(a.seq, a.entry_count, a.anchored_at) for a in anchors(engine)] == [(3, 3, now), (5, 5, now + DAY)]


def test_the_anchor_is_posted_to_the_audit_channel_and_its_ts_stored(engine, ctx, fake, clock, now):
    _append(engine, now, 4)
    head = _entries(engine)[-1].hash
    (message_id,) = sweep_and_run(ctx, clock, now)

    counts, _, batches = sweep_at(ctx, clock, now)
    assert counts[OUTBOX] == 1 and batches == [[message_id]], "the post waits in the outbox like any other"
    assert deliver_batch(context=ctx, message_ids=[message_id]) == [Outcome.SENT]

    (posted,) = fake.messages(AUDIT_CHANNEL)
    assert f"`{head}`" in posted["text"] and "4 entries" in posted["text"]
    assert "2026-03-02T09:00:00+00:00" in posted["text"]
    assert f"`{head}`" in posted["blocks"][0]["text"]["text"]
    (anchor,) = anchors(engine)
    with transaction(engine) as session:
        row = session.get(OutboxMessage, message_id)
    assert anchor.outbox_id == message_id
    assert (anchor.channel, anchor.ts) == (AUDIT_CHANNEL, posted["ts"]) == (row.sent_channel, row.sent_ts)
    verdict = verify_log(engine=ctx.engine, anchors=True)
    assert verdict.ok and (verdict.anchors.checked, verdict.anchors.posted) == (1, 1)


def test_the_ts_is_stored_only_once_slack_has_it(engine, ctx, fake, clock, now):
    _append(engine, now, 1)
    (message_id,) = sweep_and_run(ctx, clock, now)
    fake.fail_next("chat.postMessage", status=503)

    assert deliver_batch(context=ctx, message_ids=[message_id]) == [Outcome.RETRYING]
    assert anchors(engine)[0].ts == ""

    clock.advance(minutes=5)
    assert deliver_batch(context=ctx, message_ids=[message_id]) == [Outcome.SENT]
    (posted,) = fake.messages(AUDIT_CHANNEL)
    assert anchors(engine)[0].ts == posted["ts"]


def test_no_audit_channel_no_anchor(engine, context, clock, now):
    assert context.policy.channels.audit == ""
    _append(engine, now, 2)
    counts, due, _ = sweep_at(context, clock, now)
    assert (counts[ANCHOR], due) == (0, [])
    assert run_due_item(context=context, kind=ANCHOR, item_id=0) == []
    assert anchors(engine) == []


def test_an_empty_log_is_not_anchored(engine, ctx, clock, now):
    counts, due, _ = sweep_at(ctx, clock, now)
    assert (counts[ANCHOR], due) == (0, [])
    assert run_due_item(context=ctx, kind=ANCHOR, item_id=0) == []
