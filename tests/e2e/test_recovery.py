"""Failures part-way through: a worker killed mid-send, Redis restarted with tasks in it lost, and Slack
answering 429. Each delays a message but never loses it or sends it twice: the outbox rows are in the
database, and `steward sweep` enqueues whatever is due again.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from tests.e2e.conftest import (
    APPROVERS,
    REQUESTER,
    OwnRedis,
    Stack,
    approve_all,
    register_high_risk_model,
    wait_for,
)
from tests.factories import OTHER, OWNER

pytestmark = pytest.mark.e2e


def test_a_worker_killed_mid_send_loses_nothing_and_sends_nothing_twice(access_stack: Stack):
    stack = access_stack
    register_high_risk_model(stack)

    # The first approver DM the worker sends hangs at Slack's door, so its task is in flight.
    hold = stack.fake.hold_next("chat.postMessage")
    form = stack.open_modal("request churn-model", user=REQUESTER)
    stack.submit(form, {"level": "read", "duration_hours": "24", "justification": "Audit the features"},
                 user=REQUESTER)
    assert hold.arrived.wait(20), "no approver DM was attempted"
    stuck_user = hold.args["channel"].removeprefix("D")
    assert stuck_user in APPROVERS
    # The worker claimed that row (its next attempt is pushed past the claim's lifetime) and is mid-send;
    # the rest of its batch waits behind it.
    claimed = [r for r in stack.undelivered() if r.user == stuck_user and r.method == "dm"]
    assert len(claimed) == 1 and claimed[0].next_attempt_at > now(stack) + timedelta(minutes=4)
    pending = len(stack.undelivered())
    assert pending >= 3  # at least the three approver DMs (the requester's receipt, unless sent first)

    # kill -9: the task is neither acked nor requeued (Redis would hand it out again only after its
    # hour-long visibility timeout), and the request it was sending never reaches Slack.
    stack.kill_worker()
    hold.release()
    assert not any(stack.dms(a) for a in APPROVERS)

    # A new worker and a sweep. The claim lapses after five minutes (delivery's CLAIM_TTL); rather than
    # wait, time travel by moving the claimed row's next attempt back to now.
    stack.start_worker()
    stack.sql("UPDATE outboxmessage SET next_attempt_at = now() WHERE sent_at IS NULL AND next_attempt_at > now()")
    assert f"enqueued {pending} outbox message(s)" in stack.sweep()
    stack.wait_delivered(timeout=30)

    # Every approver has exactly one DM (one successful chat.postMessage each), the receipt came once.
    posts = [c for c in stack.fake.calls_to("chat.postMessage") if not c.failed]
    assert sorted(c.args["channel"] for c in posts) == sorted(f"D{a}" for a in APPROVERS)
    assert all(len(stack.dms(a)) == 1 for a in APPROVERS)
    receipts = [c for c in stack.fake.calls_to("chat.postEphemeral") if c.args["user"] == REQUESTER]
    assert len(receipts) == 1

    # And the workflow carries on from where it was: the approvers approve, access is granted.
    approve_all(stack, request_no=1)
    assert stack.sql("SELECT grantee_id, status FROM access_grant") == [(REQUESTER, "active")]
    stack.wait_delivered()
    assert all(len(stack.dms(a)) == 1 for a in APPROVERS)  # redrawn in place, never posted again


def test_redis_restart_loses_no_message(own_redis: OwnRedis, make_stack):
    stack = make_stack(env={"BROKER_URL": own_redis.url})

    # With Redis up, a registration is confirmed through the worker: it is connected and consuming.
    # Then it is idle: every message sent and every task acked (see the next test for a busy worker).
    register_dataset(stack, "Warmup events")
    stack.wait_delivered()
    wait_for(lambda: own_redis.idle(), what="the worker to ack its tasks")

    # Redis goes down (killed, nothing saved). A registration still commits, with its outbox rows; the
    # enqueue fails and is logged, and the user's modal closes as usual, in time for Slack.
    own_redis.stop()
    started = time.monotonic()
    register_dataset(stack, "Churn events")
    assert time.monotonic() - started < 3, "Slack gives up on an ack after 3 seconds"
    assert stack.sql("SELECT slug FROM asset WHERE slug = 'churn-events'")
    waiting = stack.undelivered()
    assert sorted(r.method for r in waiting) == ["dm", "ephemeral"], waiting
    assert "Broker unreachable" in stack.log("bot")

    # Redis comes back empty. The same worker reconnects by itself; the sweep re-enqueues what is due.
    own_redis.start()
    assert "enqueued 2 outbox message(s)" in stack.sweep()
    stack.wait_delivered(timeout=30, what="the worker to reconnect and deliver")
    assert stack.worker.poll() is None, "the worker should have survived an idle Redis restart"
    assert len(confirmations(stack, "churn-events")) == 1
    assert len(owner_dms(stack, "churn-events")) == 1

    # The bot reconnects too: the next registration is delivered without a sweep.
    register_dataset(stack, "Refund events")
    stack.wait_delivered(timeout=20, what="a registration after the restart")
    assert len(confirmations(stack, "refund-events")) == 1 and len(owner_dms(stack, "refund-events")) == 1
    assert len(confirmations(stack, "churn-events")) == 1 and len(owner_dms(stack, "churn-events")) == 1


def test_redis_lost_mid_send_loses_no_message(own_redis: OwnRedis, make_stack):
    stack = make_stack(env={"BROKER_URL": own_redis.url})

    # The new owner's DM hangs at Slack's door, so its delivery task is running, unacked, when Redis dies
    # and takes the task with it.
    hold = stack.fake.hold_next("chat.postMessage")
    register_dataset(stack, "Churn events")
    assert hold.arrived.wait(20), "the DM was never attempted"
    own_redis.stop()
    hold.release()

    # Known fault (kombu 5.7 with redis-py 8): a worker whose connection drops while it holds an unacked
    # task does not reconnect. Closing the channel fails in QoS.restore_unacked ("'NoneType' object has
    # no attribute 'hostname'"), Celery calls that unrecoverable, and the worker exits, with status 0,
    # once its running task ends. The deployment restarts it (docker-compose: restart: unless-stopped);
    # here the test stands in for the supervisor. Should the worker survive (a fixed kombu), it simply
    # carries on, and this wait is the only cost.
    # The held send answers 503. The Slack client retries a 5xx at once, so the DM may well go out on the
    # retry (its row is then marked sent in the database, which never went away); either way the worker
    # records the outcome before it notices that Redis is gone.
    wait_for(lambda: stack.sql("SELECT 1 FROM outboxmessage WHERE method = 'dm' AND "
                               "(sent_at IS NOT NULL OR attempts >= 1)"),
             what="the worker to record the send's outcome")
    exited = eventually(lambda: stack.worker.poll() is not None, timeout=10)
    own_redis.start()
    if exited:
        stack.start_worker()

    # The row the lost task was sending backs off after its failed send (had the worker died mid-send,
    # its claim would hold it for five minutes, delivery's CLAIM_TTL); time travel by making every
    # unsent row due now, then sweep.
    stack.sql("UPDATE outboxmessage SET next_attempt_at = now() WHERE sent_at IS NULL")
    stack.sweep()
    stack.wait_delivered(timeout=30)
    assert len(owner_dms(stack, "churn-events")) == 1
    assert len(confirmations(stack, "churn-events")) == 1
    assert len([c for c in stack.fake.calls_to("chat.postMessage") if not c.failed]) == 1


def test_slack_429_with_retry_after_delays_the_message_but_sends_it_once(stack: Stack):
    # Slack rate-limits the first chat.postMessage (the new owner's DM) and asks for 30 seconds.
    stack.fake.fail_next("chat.postMessage", status=429, retry_after=30)
    register_dataset(stack, "Churn events")

    def rate_limited() -> Any:
        rows = [r for r in stack.undelivered() if r.method == "dm"]
        return rows[0] if rows and rows[0].attempts == 1 else None
    row = wait_for(rate_limited, what="the rate-limited attempt")
    assert row.last_error == "ratelimited"
    assert timedelta(seconds=25) < row.next_attempt_at - now(stack) <= timedelta(seconds=30)

    # Retry-After is honoured: a sweep now leaves the row alone.
    stack.sweep()
    wait_for(lambda: confirmations(stack, "churn-events"), what="the confirmation (not rate-limited)")
    assert [r.id for r in stack.undelivered()] == [row.id]

    # Time travel by moving the deadline: Retry-After has passed. The next sweep sends it, once.
    stack.sql("UPDATE outboxmessage SET next_attempt_at = now() WHERE id = :id", id=row.id)
    stack.sweep()
    stack.wait_delivered()
    posts = stack.fake.calls_to("chat.postMessage")
    assert [(c.args["channel"], c.failed) for c in posts] == [(f"D{OTHER}", True), (f"D{OTHER}", False)]
    assert len(owner_dms(stack, "churn-events")) == 1
    assert len(confirmations(stack, "churn-events")) == 1


# ---- helpers ---------------------------------------------------------------------------------------


def register_dataset(stack: Stack, name: str) -> None:
    """OWNER registers a dataset and names OTHER its owner (a confirmation for OWNER, a DM for OTHER)."""
    stack.register("dataset", {"name": name, "owner_id": OTHER, "sensitivity": "internal"}, user=OWNER)


def confirmations(stack: Stack, slug: str) -> list[Any]:
    """Successful "Registered" confirmations shown to OWNER about `slug`."""
    return [c for c in stack.fake.calls_to("chat.postEphemeral")
            if not c.failed and c.args.get("user") == OWNER and f"`{slug}`" in json.dumps(c.args)]


def owner_dms(stack: Stack, slug: str) -> list[dict[str, Any]]:
    """The DMs telling OTHER they own `slug`."""
    return [m for m in stack.dms(OTHER) if "named you its owner" in json.dumps(m) and f"`{slug}`" in json.dumps(m)]


def eventually(condition, *, timeout: float) -> bool:
    """Whether `condition()` becomes true within `timeout` seconds (for outcomes that may not happen)."""
    try:
        wait_for(condition, timeout=timeout)
    except TimeoutError:
        return False
    return True


def now(stack: Stack):
    """The database's clock (the wall clock the subprocesses read too)."""
    return stack.sql("SELECT now()")[0][0]
