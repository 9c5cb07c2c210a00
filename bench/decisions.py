"""End-to-end decisions per second on PostgreSQL and Redis, with real `steward worker` processes.

Files pending access requests through the service, starts Celery workers, then hands every approval
to the workers exactly as the bot's approve button does after its ack (`enqueue_decision`). Each
decision is one transaction (compare-and-set of the request, its grant, a hash-chained log entry and
outbox rows), then a delivery task posts the messages to the sandbox Slack. The clock stops when no
request is pending and no outbox row is unsent. Two floors are measured in the same run: Celery no-op
tasks through the same broker and workers (`celery.accumulate`), and single-row insert-and-commit
transactions on the same database. To show where the time goes, the decision transaction is also
timed in this process, and the share of it that holds the hash chain's lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import redis
from slack_sdk import WebClient
from sqlalchemy import Engine, text

from bench.ack_overhead import ROOT, TOKEN, _rss_kib, _tree
from bench.common import Run, database_url, fresh_database, timings
from bench.inventory_data import OWNERS, seed_assets
from steward.sandbox.slack_api import FakeSlack
from workers import tasks
from workers.celery_app import WorkerContext, make_celery
from workflows import access, audit
from workflows.db import transaction
from workflows.inventory import Actor
from workflows.policy import load_policy
from workflows.settings import Settings

NAME = "decisions"
REQUESTER = "U0BENCHREQ"
QUEUE = "celery"
STALL_SECONDS = 60


def _file_requests(engine: Engine, count: int) -> list[tuple[int, str]]:
    """`count` pending requests, one per asset (default policy: the owner approves); (id, approver)."""
    policy, filed = load_policy(None), []
    now = datetime.now(UTC)
    for asset_id in range(1, count + 1):
        with transaction(engine) as session:
            request = access.request_access(
                session=session, asset_id=asset_id, requester=Actor(REQUESTER), now=now, policy=policy,
                data=access.RequestInput(level="read", duration_hours=24, justification="benchmark"),
                members_of=lambda group: frozenset())
            filed.append((request.id, OWNERS[asset_id % len(OWNERS)]))
    return filed


def _deliver_here(context: WorkerContext) -> None:
    """Deliver every message written so far in this process: they are not part of the figure, but later
    messages redraw them (chat.update), so they must really be in the sandbox Slack."""
    with context.engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM outboxmessage WHERE sent_at IS NULL ORDER BY id")).scalars().all()
    tasks.deliver_batch(context=context, message_ids=ids)


def _settled(engine: Engine, broker: redis.Redis) -> bool:
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM access_request WHERE status = 'pending'")).scalar_one()
        unsent = conn.execute(text("SELECT count(*) FROM outboxmessage WHERE sent_at IS NULL")).scalar_one()
    return pending == 0 and unsent == 0 and _drained(broker)


def _state(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(
            "SELECT (SELECT count(*) FROM access_request WHERE status = 'pending'), "
            "(SELECT count(*) FROM outboxmessage WHERE sent_at IS NULL), "
            "(SELECT string_agg(DISTINCT method || ':' || (payload->>'template'), ',') FROM outboxmessage "
            "WHERE sent_at IS NULL)")).one())


def _drained(broker: redis.Redis) -> bool:
    # acks_late: a task leaves `unacked` only once it has finished.
    return broker.llen(QUEUE) == 0 and broker.hlen("unacked") == 0


def _wait(condition: Any, progress: Any = lambda: None) -> float:
    """Seconds until `condition()` holds; gives up when `progress()` has not changed for STALL_SECONDS."""
    started = last_change = time.perf_counter()
    seen = progress()
    while not condition():
        now = time.perf_counter()
        if (current := progress()) != seen:
            seen, last_change = current, now
        elif now - last_change > STALL_SECONDS:
            raise RuntimeError(f"the workers made no progress for {STALL_SECONDS} s: {current}")
        time.sleep(0.05)
    return time.perf_counter() - started


def _insert_floor(engine: Engine, count: int) -> float:
    """Single-row insert-and-commit transactions per second on this database."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_floor (id serial PRIMARY KEY, at timestamptz)"))

    def one() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO bench_floor (at) VALUES (now())"))
    return count / sum(timings(one, count))


def _in_process(context: WorkerContext, filed: list[tuple[int, str]]) -> dict[str, float]:
    """Mean ms of the decision transaction run here, and of the part holding the chain lock (from chaining at commit)."""
    locked: list[float] = []  # when this decision first took the chain lock
    real_lock = audit._lock_chain

    def timed_lock(session: Any) -> None:
        real_lock(session)
        locked.append(time.perf_counter())

    audit._lock_chain = timed_lock
    total, held, delivery, messages = [], [], [], 0
    try:
        for request_id, approver in filed:
            locked.clear()
            started = time.perf_counter()
            ids = tasks.decide(context=context, request_id=request_id, approver_id=approver,
                               outcome=access.APPROVE, enqueue_jobs=lambda ids: None)
            done = time.perf_counter()
            total.append(done - started)
            held.append(done - locked[0])  # the lock is held from chaining the entries (at commit) to the end
            tasks.deliver_batch(context=context, message_ids=ids)
            delivery.append(time.perf_counter() - done)
            messages += len(ids)
    finally:
        audit._lock_chain = real_lock
    return {"decision_ms": 1000 * sum(total) / len(total), "lock_held_ms": 1000 * sum(held) / len(held),
            "delivery_ms": 1000 * sum(delivery) / len(delivery), "messages_per_decision": messages / len(filed)}


def run(run: Run) -> dict[str, Any]:
    """Seed, start workers, decide, print; return the figures."""
    if not run.postgres_url:
        print("decisions: needs --database-url (PostgreSQL) and Redis; skipped")
        return {"rows": [], "skipped": "no PostgreSQL"}
    count = run.pick(20, 300, 1_000)
    processes = run.pick(1, 2, 2)
    broker_url = run.redis_url
    figures: dict[str, Any] = {"decisions": count, "worker_processes": processes, "rows": []}
    with fresh_database("postgresql", run, prefix="decisions") as engine, FakeSlack() as fake, \
            tempfile.TemporaryDirectory(prefix="decisions-") as home:
        for user in (REQUESTER, *OWNERS):
            fake.add_user(user, name=user.lower())
        broker = redis.Redis.from_url(broker_url)
        broker.flushdb()
        seed_assets(engine, count + 50)
        filed = _file_requests(engine, count + 50)
        settings = Settings(database_url=database_url(engine), broker_url=broker_url, slack_api_url=fake.url,
                            slack_bot_token=TOKEN)
        context = WorkerContext(engine=engine, client=WebClient(token=TOKEN, base_url=fake.url), settings=settings,
                                policy=load_policy(None))
        _deliver_here(context)
        timing = _in_process(context, filed[count:])  # the 50 extra, decided and delivered here
        env = {**os.environ, "DATABASE_URL": database_url(engine), "BROKER_URL": broker_url,
               "SLACK_API_URL": fake.url, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": "bench",
               "STEWARD_HOME": home, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        workers = [subprocess.Popen([sys.executable, "-m", "steward", "worker", "--health-port", "0"], env=env,
                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(processes)]
        try:
            celery = make_celery(settings)
            # Warm up: each worker connects and imports before the clock starts.
            for _ in range(4 * processes):
                celery.send_task("celery.accumulate", args=(1,))
            _wait(lambda: _drained(broker))
            idle_rss = sum(_rss(worker.pid) for worker in workers)
            started = time.perf_counter()
            for _ in range(count):
                celery.send_task("celery.accumulate", args=(1,))
            noop_rate = count / (time.perf_counter() - started + _wait(lambda: _drained(broker)))
            started = time.perf_counter()
            for request_id, approver in filed[:count]:
                tasks.enqueue_decision(request_id, approver, access.APPROVE)
            _wait(lambda: _settled(engine, broker), lambda: _state(engine))
            rate = count / (time.perf_counter() - started)
            insert_rate = _insert_floor(engine, 200)
            rss = sum(_rss(worker.pid) for worker in workers)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
            broker.flushdb()
        delivered = len([c for c in fake.calls if not c.failed])
    print(f"decisions on postgresql + redis: {count} approvals, {processes} `steward worker` process(es) × 4 threads")
    print(f"  end to end: {rate:8.1f} decisions/s  ({delivered} Slack calls delivered)")
    print(f"  floor: Celery no-op round trip {noop_rate:8.1f} tasks/s  → ratio {rate / noop_rate:.2f}")
    print(f"  floor: insert-and-commit       {insert_rate:8.1f} rows/s   → ratio {rate / insert_rate:.2f}")
    print(f"  one decision transaction here: {timing['decision_ms']:.1f} ms, of which {timing['lock_held_ms']:.1f} ms"
          f" hold the chain lock (chaining at commit): the chain caps at ~{1000 / timing['lock_held_ms']:.0f}/s")
    print(f"  delivering its {timing['messages_per_decision']:.1f} messages here: {timing['delivery_ms']:.1f} ms"
          " (claim, render, Slack call, mark sent: one transaction each side of the call)")
    print(f"  worker resident memory (all processes): {idle_rss:.0f} MiB idle, {rss:.0f} MiB after the load")
    figures |= {"per_second": round(rate, 1), "noop_tasks_per_second": round(noop_rate, 1),
                "inserts_per_second": round(insert_rate, 1), **{k: round(v, 2) for k, v in timing.items()},
                "worker_rss_mib": round(rss, 1),
                "worker_idle_rss_mib": round(idle_rss, 1)}
    figures["rows"] += [
        {"figure": "decisions/s vs Celery no-op/s", "value": f"{rate:.1f} / {noop_rate:.1f}",
         "ratio": round(rate / noop_rate, 2)},
        {"figure": "decisions/s vs insert-commit/s", "value": f"{rate:.1f} / {insert_rate:.1f}",
         "ratio": round(rate / insert_rate, 2)},
        {"figure": "chain lock held per decision", "ms": round(timing["lock_held_ms"], 2),
         "floor_ms": round(timing["decision_ms"], 2), "ratio": round(timing["lock_held_ms"] / timing["decision_ms"], 2)},
        {"figure": "delivery per decision (in process)", "ms": round(timing["delivery_ms"], 2),
         "floor_ms": round(timing["decision_ms"], 2), "ratio": round(timing["delivery_ms"] / timing["decision_ms"], 2)},
        {"figure": "worker RSS idle → after load", "value": f"{idle_rss:.0f} → {rss:.0f} MiB"},
    ]
    return figures


def _rss(pid: int) -> float:
    return sum(_rss_kib(p) for p in _tree(pid)) / 1024
