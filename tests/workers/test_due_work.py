"""run_due and the sweep: each kind of deadline work, run once, and exactly what is due enqueued."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, inspect, select

from tests.factories import (
    GOV1,
    OWNER,
    REQUESTER,
    last_outbox_id,
    log_actions,
    make_asset,
    make_grant,
    make_request,
    members,
    outbox_rows,
    reload_grant,
    reload_request,
    request_steps,
)
from tests.workers.conftest import render_state, run_message, take_messages
from workers.celery_app import make_celery
from workers.delivery import Outcome
from workers.tasks import (
    DELIVER_OUTBOX,
    OUTBOX,
    RUN_DUE,
    SWEEP,
    DueKind,
    deliver_batch,
    run_due,
    run_due_item,
    sweep_once,
)
from workflows.db import transaction
from workflows.enums import GrantStatus, RequestStatus
from workflows.models import AccessRequest, Grant, OutboxMessage, ProvisioningJob, QueuedWork
from workflows.outbox import OutboxMethod
from workflows.policy import Policy

HOUR = timedelta(hours=1)


@pytest.fixture
def staffed_policy(policy) -> Policy:
    """The default policy with someone in the fallback group, as Slack ids the directory needs no call for."""
    data = policy.model_dump(mode="json")
    data["groups"]["governance"] = [GOV1]
    return Policy.model_validate(data)


@pytest.fixture
def ctx(context, staffed_policy):
    """The worker context with the staffed policy and a renderer that draws from stored state."""
    return replace(context, renderer=render_state, policy=staffed_policy)


@pytest.fixture
def pending(engine, ctx, now):
    """A request filed at `now` whose one step the owner approves (default timings: 4 h, 24 h, 48 h, 7 d)."""
    asset = make_asset(engine, policy=ctx.policy, now=now, name="Churn events")
    return make_request(engine, asset, policy=ctx.policy, now=now, members_of=members())


@pytest.fixture
def grant(engine, ctx, now):
    """A grant approved at `now` for 48 hours: warned from +24 h, ended at +48 h."""
    asset = make_asset(engine, policy=ctx.policy, now=now, name="Fraud labels")
    return make_grant(engine, asset, policy=ctx.policy, now=now, duration_hours=48)


def rows(engine, ids: list[int]) -> list[OutboxMessage]:
    """The outbox rows with these ids, in order."""
    return [r for r in outbox_rows(engine) if r.id in ids]


def sweep_at(ctx, clock, at) -> tuple[dict[str, int], set[tuple[str, int]], list[list[int]]]:
    """One sweep at `at`: its counts, the (kind, id) pairs and the outbox batches it enqueued."""
    clock.now = at
    due: list[tuple[str, int]] = []
    batches: list[list[int]] = []
    counts = sweep_once(context=ctx, enqueue_due=lambda kind, item_id: due.append((kind, item_id)),
                        enqueue_delivery=batches.append)
    assert len(due) == len(set(due))
    return counts, set(due), batches


# ---- run_due, one kind at a time -----------------------------------------------------------------


def test_a_reminder_nudges_the_undecided_approver_once(engine, ctx, fake, clock, now, pending):
    clock.now = now + 4 * HOUR

    ids = run_due_item(context=ctx, kind="reminder", item_id=pending.id)

    [row] = rows(engine, ids)
    assert (row.method, row.user, row.payload["template"]) == (OutboxMethod.DM, OWNER, "approval_reminder")
    stored = reload_request(engine, pending)
    assert (stored.reminders_sent, stored.next_reminder_at) == (1, now + 24 * HOUR)
    assert run_due_item(context=ctx, kind="reminder", item_id=pending.id) == []  # a retried task: no-op
    assert deliver_batch(context=ctx, message_ids=ids) == [Outcome.SENT]
    assert fake.messages(f"D{OWNER}")[-1]["text"] == f"approval_reminder #{pending.id} pending"


def test_an_escalation_asks_the_fallback_group_and_tells_the_requester(engine, ctx, clock, now, pending):
    clock.now = now + 48 * HOUR

    ids = run_due_item(context=ctx, kind="escalation", item_id=pending.id)

    sent = {(r.user, r.payload["template"]) for r in rows(engine, ids)}
    assert sent == {(GOV1, "approval_request"), (REQUESTER, "request_escalated")}
    [step] = request_steps(engine, pending)
    assert set(step.approvers) == {OWNER, GOV1}
    assert reload_request(engine, pending).escalate_at is None
    assert run_due_item(context=ctx, kind="escalation", item_id=pending.id) == []


def test_an_escalation_with_nobody_to_ask_is_logged_once(engine, ctx, policy, clock, now, pending):
    clock.now = now + 48 * HOUR
    unstaffed = replace(ctx, policy=policy)  # the shipped policy's governance group is empty

    assert run_due_item(context=unstaffed, kind="escalation", item_id=pending.id) == []

    # Escalation is attempted once: the failure is on record, and the next sweep does not retry it.
    assert reload_request(engine, pending).escalate_at is None
    assert log_actions(engine)[-1] == "access.escalation_failed"
    assert run_due_item(context=unstaffed, kind="escalation", item_id=pending.id) == []


def test_a_request_nobody_decided_expires(engine, ctx, fake, clock, now, pending):
    first = last_outbox_id(engine) - 1  # the owner's approval request and the receipt
    deliver_batch(context=ctx, message_ids=[first, first + 1])
    clock.now = now + timedelta(days=7)

    ids = run_due_item(context=ctx, kind="request_expiry", item_id=pending.id)

    assert reload_request(engine, pending).status == RequestStatus.EXPIRED
    kinds = sorted((r.method, r.payload["template"]) for r in rows(engine, ids))
    assert kinds == [(OutboxMethod.DM, "request_expired"), (OutboxMethod.UPDATE, "redraw")]
    assert set(deliver_batch(context=ctx, message_ids=ids)) == {Outcome.SENT}
    assert [m["text"] for m in fake.messages(f"D{OWNER}")] == [f"approval_request #{pending.id} expired"]
    assert run_due_item(context=ctx, kind="request_expiry", item_id=pending.id) == []


def test_a_grant_is_warned_once_before_it_ends(engine, ctx, clock, now, grant):
    clock.now = now + 24 * HOUR

    ids = run_due_item(context=ctx, kind="grant_warning", item_id=grant.id)

    [row] = rows(engine, ids)
    assert (row.user, row.payload) == (REQUESTER, {"template": "grant_expiring", "grant_id": grant.id})
    assert reload_grant(engine, grant).warned_at == now + 24 * HOUR
    assert run_due_item(context=ctx, kind="grant_warning", item_id=grant.id) == []


def test_a_grant_ends_at_its_expiry(engine, ctx, fake, clock, now, grant):
    clock.now = now + 48 * HOUR

    ids = run_due_item(context=ctx, kind="grant_expiry", item_id=grant.id)

    assert reload_grant(engine, grant).status == GrantStatus.EXPIRED
    [row] = rows(engine, ids)
    assert (row.user, row.payload["template"]) == (REQUESTER, "grant_expired")
    assert deliver_batch(context=ctx, message_ids=ids) == [Outcome.SENT]
    assert fake.messages(f"D{REQUESTER}")[-1]["text"] == f"grant_expired grant #{grant.id} expired"
    assert run_due_item(context=ctx, kind="grant_expiry", item_id=grant.id) == []


def test_work_that_is_not_due_yet_does_nothing(engine, ctx, clock, now, pending, grant):
    clock.now = now + HOUR
    for kind in ("reminder", "escalation", "request_expiry"):
        assert run_due_item(context=ctx, kind=kind, item_id=pending.id) == []
    for kind in ("grant_warning", "grant_expiry"):
        assert run_due_item(context=ctx, kind=kind, item_id=grant.id) == []
    assert reload_request(engine, pending).reminders_sent == 0
    assert reload_grant(engine, grant).status == GrantStatus.ACTIVE


def test_an_unknown_kind_is_a_programming_error(ctx):
    with pytest.raises(ValueError, match="review"):
        run_due_item(context=ctx, kind="review", item_id=1)


# ---- the sweep -----------------------------------------------------------------------------------


def test_the_sweep_enqueues_exactly_what_is_due(engine, ctx, clock, now, pending, grant):
    p, g = pending.id, grant.id

    counts, due, batches = sweep_at(ctx, clock, now)
    assert due == set()
    assert counts[OUTBOX] == len(outbox_rows(engine)) == sum(len(b) for b in batches)
    deliver_batch(context=ctx, message_ids=[i for b in batches for i in b])

    assert sweep_at(ctx, clock, now + 4 * HOUR)[1] == {("reminder", p)}
    assert sweep_at(ctx, clock, now + 24 * HOUR)[1] == {("reminder", p), ("grant_warning", g)}
    assert sweep_at(ctx, clock, now + 48 * HOUR)[1] == {("reminder", p), ("escalation", p), ("grant_expiry", g)}
    counts, due, _ = sweep_at(ctx, clock, now + timedelta(days=7))
    assert due == {("reminder", p), ("escalation", p), ("request_expiry", p), ("grant_expiry", g)}
    assert counts == {OUTBOX: 0, "reminder": 1, "escalation": 1, "request_expiry": 1, "grant_warning": 0,
                      "grant_expiry": 1, "provisioning": 0, "audit_anchor": 0, "review_schedule": 0,
                      "review_nudge": 0, "review_escalation": 0, "recert_start": 0, "recert_escalation": 0}


def test_work_done_is_not_swept_again(engine, ctx, clock, now, pending):
    clock.now = now + 4 * HOUR
    run_due_item(context=ctx, kind="reminder", item_id=pending.id)

    counts, due, _ = sweep_at(ctx, clock, now + 4 * HOUR)

    assert due == set()
    assert counts["reminder"] == 0
    assert counts[OUTBOX] >= 1  # the reminder itself, awaiting delivery


def test_a_due_item_is_queued_once_until_a_worker_takes_it_or_its_task_counts_as_lost(
        engine, ctx, clock, now, grant):
    g = grant.id
    window = timedelta(seconds=ctx.settings.outbox_claim_seconds)
    assert sweep_at(ctx, clock, now + 48 * HOUR)[1] == {("grant_expiry", g)}

    # A backlog: the task waits in the broker while later sweeps run. They do not queue it again.
    assert sweep_at(ctx, clock, now + 48 * HOUR + timedelta(seconds=1))[1] == set()
    assert sweep_at(ctx, clock, now + 48 * HOUR + window - timedelta(seconds=1))[1] == set()
    # Its task was lost (a broker restart): once the window has passed, the next sweep queues it again.
    assert sweep_at(ctx, clock, now + 48 * HOUR + window)[1] == {("grant_expiry", g)}

    # The task that runs it takes the mark away with the work, in one transaction.
    run_due_item(context=ctx, kind="grant_expiry", item_id=g)
    with transaction(engine) as session:
        assert session.exec(select(QueuedWork)).all() == []
    assert reload_grant(engine, grant).status == GrantStatus.EXPIRED


def test_a_large_day_of_expiries_is_handed_out_in_one_sweep(engine, ctx, clock, now, grant):
    # Far more than one page of 500: a big organisation's expiries must not trickle out over many sweeps.
    count = 1_200
    with engine.begin() as conn:
        request = conn.execute(select(AccessRequest.__table__).where(AccessRequest.id == grant.request_id)).one()
        first = conn.execute(select(func.max(AccessRequest.id))).scalar_one() + 1
        conn.execute(insert(AccessRequest.__table__),
                     [{**request._asdict(), "id": first + n} for n in range(count)])
        template = conn.execute(select(Grant.__table__).where(Grant.id == grant.id)).one()._asdict()
        conn.execute(insert(Grant.__table__), [{**template, "id": first + n, "request_id": first + n}
                                               for n in range(count)])

    counts, due, _ = sweep_at(ctx, clock, now + 48 * HOUR)

    assert counts["grant_expiry"] == count + 1
    assert {item_id for kind, item_id in due if kind == "grant_expiry"} == {grant.id, *range(first, first + count)}


def test_the_sweep_task_enqueues_run_due_and_those_enqueue_delivery(engine, ctx, settings, fake, clock, now,
                                                                    pending, fresh_celery):
    app = make_celery(settings, context=ctx)
    assert take_messages(app) == []  # the fixtures wrote rows, not tasks
    clock.now = now + 4 * HOUR

    counts = app.tasks[SWEEP].run()

    assert counts["reminder"] == 1
    messages = take_messages(app)
    runs = [m for m in messages if m.headers["task"] == RUN_DUE]
    assert [m.decode()[0] for m in runs] == [["reminder", pending.id]]
    ids = run_message(app, runs[0])
    [delivery] = take_messages(app)
    assert delivery.headers["task"] == DELIVER_OUTBOX and delivery.decode()[0] == [ids]


def test_run_due_is_a_thin_task(engine, ctx, settings, clock, now, grant, fresh_celery):
    app = make_celery(settings, context=ctx)
    clock.now = now + 48 * HOUR

    ids = run_due(DueKind.GRANT_EXPIRY.value, grant.id)  # the task's function, in-process

    assert reload_grant(engine, grant).status == GrantStatus.EXPIRED
    assert [m.decode()[0] for m in take_messages(app)] == [[ids]]


# ---- the sweep's queries stay on indexed columns -------------------------------------------------

# Every deadline column a due query ranges over (workflows.deadlines, .outbox and .provisioning).
DEADLINE_COLUMNS = [
    (OutboxMessage, "next_attempt_at"),
    (AccessRequest, "next_reminder_at"),
    (AccessRequest, "escalate_at"),
    (AccessRequest, "expires_at"),
    (Grant, "expires_at"),
    (ProvisioningJob, "next_attempt_at"),
]


@pytest.mark.parametrize(("model", "column"), DEADLINE_COLUMNS, ids=lambda v: getattr(v, "__name__", v))
def test_each_due_query_ranges_over_an_indexed_column(engine, model, column):
    table = model.__table__
    assert any(list(index.columns.keys())[:1] == [column] for index in table.indexes), (table.name, column)
    # ...and the migrations built that index in the real database, not only in the metadata.
    leading = [index["column_names"][:1] for index in inspect(engine).get_indexes(table.name)]
    assert [column] in leading, (table.name, column, leading)
