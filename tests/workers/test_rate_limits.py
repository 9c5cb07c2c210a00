"""A campaign that DMs 5,000 owners through Slack's rate limits: nothing lost, nothing repeated.

The fake Slack API enforces one message a second per channel and a workspace budget per minute, on
the test's clock. The loop below plays the scheduler and the workers: each iteration is one scheduler tick, which
sweeps (as the sweep task would) and delivers what the sweep enqueued (as the deliver_outbox tasks
would); then the clock moves to the next tick, or further, to the earliest row's `next_attempt_at`
(which a 429 set from its Retry-After) if nothing is due before then.
No Celery, no sleeping: time passes only when the loop moves it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import event, func, insert
from sqlmodel import select

from steward.sandbox.slack_api import DEFAULT_TOKEN, FakeSlack
from tests.workers.conftest import Clock, render
from workers.celery_app import WorkerContext
from workers.delivery import Outcome
from workers.tasks import BATCH_SIZE, deliver_batch, sweep_once
from workflows.db import transaction
from workflows.models import OutboxMessage
from workflows.outbox import OutboxMethod

OWNERS = 5_000
# Below the sweep's 500 rows, so every sweep meets the budget and gets 429s.
WORKSPACE_PER_MINUTE = 300
SWEEP_EVERY = timedelta(minutes=1)
WORKERS = 2
# One tick per minute of workspace budget, plus the last partial minute and the final empty sweep.
MAX_ITERATIONS = OWNERS // WORKSPACE_PER_MINUTE + 3


def owner(n: int) -> str:
    return f"U{n:07d}"


@pytest.fixture
def campaign(fast_sqlite, settings, policy, now):
    sqlite_engine = fast_sqlite
    """5,000 DM rows queued in one bulk insert, a clock, and a fake Slack with limits on that clock."""
    with transaction(sqlite_engine) as session:
        session.execute(insert(OutboxMessage), [
            {"created_at": now, "method": OutboxMethod.DM.value, "user": owner(n), "channel": "",
             "payload": {"text": f"Your reviews are due, {owner(n)}"}, "next_attempt_at": now, "attempts": 0,
             "sent_channel": "", "sent_ts": "", "last_error": "", "topic": ""}
            for n in range(OWNERS)])
    clock = Clock(now)
    with FakeSlack(clock=lambda: clock.now.timestamp()) as fake:
        fake.enforce_rate_limits(per_channel_per_second=1, workspace_per_minute=WORKSPACE_PER_MINUTE)
        client = WebClient(base_url=fake.url, token=DEFAULT_TOKEN, retry_handlers=[])
        context = WorkerContext(engine=sqlite_engine, client=client, settings=settings, now=clock,
                                renderer=render, policy=policy)
        yield context, clock, fake


@pytest.fixture
def fast_sqlite(sqlite_engine):
    """The SQLite test database without an fsync per commit: this test is about Slack, not durability."""
    @event.listens_for(sqlite_engine, "connect")
    def _no_fsync(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    sqlite_engine.dispose()  # reconnect with the pragma
    return sqlite_engine


def next_due(engine) -> datetime | None:
    with transaction(engine) as session:
        return session.exec(select(func.min(OutboxMessage.next_attempt_at))
                            .where(OutboxMessage.sent_at.is_(None))).one()


def test_a_campaign_to_5000_owners_gets_through_the_rate_limits(campaign):
    context, clock, fake = campaign
    outcomes: Counter[str] = Counter()
    iterations = 0
    while True:
        iterations += 1
        assert iterations <= MAX_ITERATIONS, f"the campaign did not finish in {MAX_ITERATIONS} iterations"
        batches: list[list[int]] = []
        sweep_once(context=context, enqueue_due=lambda kind, item_id: None, enqueue_delivery=batches.append)
        # Several workers deliver the sweep's batches at once, as a worker pool would.
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for batch_outcomes in pool.map(lambda ids: deliver_batch(context=context, message_ids=ids), batches):
                outcomes.update(batch_outcomes)
        due = next_due(context.engine)
        if due is None:
            break
        # The next tick, or the next row's next attempt (a Retry-After, as delivery stored it) if later.
        clock.now = max(clock.now + SWEEP_EVERY, due.astimezone(UTC))

    posts = fake.calls_to("chat.postMessage")
    delivered = [c for c in posts if not c.failed]
    # Every owner got exactly one message, and no message was sent twice.
    assert len(delivered) == OWNERS
    per_channel = Counter(c.args["channel"] for c in delivered)
    assert set(per_channel) == {f"D{owner(n)}" for n in range(OWNERS)}
    assert max(per_channel.values()) == 1
    assert outcomes[Outcome.SENT] == OWNERS
    with transaction(context.engine) as session:
        rows = session.exec(select(OutboxMessage.sent_at, OutboxMessage.sent_ts)).all()
    assert all(sent_at is not None for sent_at, _ in rows)
    assert len({ts for _, ts in rows}) == OWNERS

    # Slack did push back, and every Retry-After was honoured: nothing was posted to a channel before
    # the time a 429 for that channel named.
    refused = fake.rate_limited()
    assert refused, "the campaign should have hit the workspace budget"
    assert outcomes[Outcome.RATE_LIMITED] == len(refused)
    # A 429 stops its batch, so each tick costs at most one refused post per batch the sweep enqueued.
    # (Retry-After is honoured per message, not workspace-wide: the other batches of the same tick
    # still try once each.)
    assert len(refused) <= iterations * (500 // BATCH_SIZE)
    not_before: dict[str, float] = defaultdict(float)
    for call in posts:
        channel = call.args["channel"]
        assert call.at >= not_before[channel], f"{channel} was retried before its Retry-After"
        if call.retry_after is not None:
            not_before[channel] = call.at + call.retry_after
    # And the workspace budget itself was never exceeded: at most WORKSPACE_PER_MINUTE per minute.
    times = sorted(c.at for c in delivered)
    assert iterations >= OWNERS // WORKSPACE_PER_MINUTE
    for i in range(len(times) - WORKSPACE_PER_MINUTE):
        assert times[i + WORKSPACE_PER_MINUTE] - times[i] >= 60
    # About one minute of budget per WORKSPACE_PER_MINUTE owners, not more.
    assert times[-1] - times[0] <= 60 * (OWNERS // WORKSPACE_PER_MINUTE + 1)
