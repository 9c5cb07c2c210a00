"""Steward's Celery tasks, kept thin: ids in, one workflows call, delivery; plus the bot's enqueue helpers.

Tasks are shared tasks, so they register on whichever app `make_celery` builds. Each is
idempotent and runs with acks_late and reject_on_worker_lost: a task lost with its worker is
redelivered, and running one twice sends nothing twice (delivery claims rows in the database,
and every workflows call re-checks its state under a row lock). A row that must wait stays in the
database with its `next_attempt_at`, a deadline stays in its column, and the once-a-minute sweep
enqueues them again when they are due. The one exception is a decision that finds the database
unreachable: a click exists nowhere but in its task, so the task retries itself, seconds apart.

- `deliver_outbox(ids)`: send outbox rows to Slack.
- `decide_request(...)`: one approver's Approve or Deny; a losing click gets an ephemeral answer. The bot
  records a click itself (`decide_now`) and queues it only while the database is unreachable: a queued
  click exists nowhere else, so a Redis that loses its data or a worker killed mid-task would lose it.
- `run_due(kind, id)`: one reminder, escalation, request expiry, grant warning or grant expiry, a review
  nudge to schedule or send, the overdue-review escalation (workflows/reviews.py), a recertification
  to start or escalate (workflows/recertification.py), or the
  daily audit anchor (the decision log's head posted to the audit channel).
- `provision(job_id)`: one attempt at a webhook provisioning job (workers/webhooks.py).
- `sweep()`: find what is due (`sweep_once`) and enqueue the tasks above for it.

A change that writes webhook provisioning jobs (an approval, an expiry) enqueues `provision` for them
after commit; if that fails, or a worker dies, the job stays due and the sweep enqueues it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerUnavailable
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from workers import webhooks
from workers.celery_app import FILESYSTEM_BROKER, WorkerContext, get_context, prune_processed
from workers.delivery import Outcome, deliver
from workers.directory import Directory
from workers.metrics import SWEEP_SECONDS
from workflows import access, anchors, deadlines, orphans, provisioning, queued, recertification, reviews
from workflows.access import AlreadyDecided
from workflows.db import DatabaseUnavailable, transaction
from workflows.errors import Conflict, InvalidInput, NotAllowed, NotFound
from workflows.outbox import (
    OutboxMethod,
    add_message,
    added_message_ids,
    queue_due_message_ids,
    unqueue_messages,
)
from workflows.policy import Policy

logger = logging.getLogger(__name__)

DELIVER_OUTBOX = "steward.deliver_outbox"
DECIDE_REQUEST = "steward.decide_request"
RUN_DUE = "steward.run_due"
PROVISION = "steward.provision"
SWEEP = "steward.sweep"
BATCH_SIZE = 20
# Due items of one kind a sweep hands out at most: a whole day's expiries of a large organisation go in
# one sweep (ids only, a few hundred KB); a larger backlog drains over the next sweeps.
SWEEP_LIMIT = 20_000
# Consumed broker messages kept on disk for a while (for debugging), then removed by the sweep.
KEEP_PROCESSED = timedelta(days=1)
TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}
# A decision waits out a database outage of a few minutes (1, 2, 4, 8, 16, 16… seconds apart); the
# waits are far shorter than the broker's visibility timeout, so no second worker starts it meanwhile.
DECISION_RETRY = {"autoretry_for": (DatabaseUnavailable,), "retry_backoff": 1, "retry_backoff_max": 16,
                  "retry_jitter": False, "max_retries": 15}
# A queued sweep not started within this many scheduler intervals (and this many seconds) is dropped.
SWEEP_EXPIRY_INTERVALS = 10
SWEEP_MIN_EXPIRY_SECONDS = 60.0
# The sweep's count of outbox rows and of due provisioning jobs, next to the DueKind counts.
OUTBOX = "outbox"
PROVISIONING = provisioning.SWEEP_KIND
# Refusals a user (or the policy's author) can act on; anything else is a fault and propagates.
# DatabaseUnavailable is a DomainError too, and is deliberately not among them.
REFUSALS = (Conflict, NotAllowed, NotFound, InvalidInput)


class DueKind(StrEnum):
    """The kinds of deadline work `run_due` executes, one item at a time."""

    REMINDER = "reminder"
    ESCALATION = "escalation"
    REQUEST_EXPIRY = "request_expiry"
    GRANT_WARNING = "grant_warning"
    GRANT_EXPIRY = "grant_expiry"
    AUDIT_ANCHOR = "audit_anchor"  # the daily anchor of the decision log (item id 0: there is only one)
    REVIEW_SCHEDULE = "review_schedule"      # item: an asset entering its review window; its owner is scheduled
    REVIEW_NUDGE = "review_nudge"            # item: a review_nudge row whose 09:00 has come
    REVIEW_ESCALATION = "review_escalation"  # overdue reviews to the governance channel (item id 0: one message)
    RECERT_START = "recert_start"            # item: an asset whose recertification is due, unscheduled or requested
    RECERT_ESCALATION = "recert_escalation"  # item: a recertification campaign open 14 days, to security


# Which list of workflows.deadlines.DueWork holds each kind's ids, in the order the sweep reports them.
DUE_WORK_FIELDS: dict[DueKind, str] = {
    DueKind.REMINDER: "reminders",
    DueKind.ESCALATION: "escalations",
    DueKind.REQUEST_EXPIRY: "request_expiries",
    DueKind.GRANT_WARNING: "grant_warnings",
    DueKind.GRANT_EXPIRY: "grant_expiries",
}


# ---- tasks ---------------------------------------------------------------------------------------


@shared_task(name=DELIVER_OUTBOX, **TASK_OPTIONS)
def deliver_outbox(message_ids: list[int]) -> list[str]:
    """Deliver these outbox rows to Slack."""
    return deliver_batch(context=get_context(), message_ids=message_ids)


@shared_task(name=DECIDE_REQUEST, **TASK_OPTIONS, **DECISION_RETRY)
def decide_request(request_id: int, approver_id: str, outcome: str, reason: str = "",
                   channel: str = "") -> list[int]:
    """Record one approver's decision, then enqueue delivery of the messages it implies."""
    ids = decide(context=get_context(), request_id=request_id, approver_id=approver_id, outcome=outcome,
                 reason=reason, channel=channel)
    enqueue_delivery(ids)
    return ids


@shared_task(name=RUN_DUE, **TASK_OPTIONS)
def run_due(kind: str, item_id: int) -> list[int]:
    """Execute one due item (a reminder, escalation, expiry or grant warning), then enqueue its messages."""
    ids = run_due_item(context=get_context(), kind=kind, item_id=item_id)
    enqueue_delivery(ids)
    return ids


@shared_task(name=PROVISION, **TASK_OPTIONS)
def provision(job_id: int) -> list[int]:
    """Make one attempt at a webhook provisioning job, then enqueue the messages its outcome implies."""
    ran = webhooks.run_job(context=get_context(), job_id=int(job_id))
    enqueue_delivery(ran.message_ids)
    enqueue_provisioning(ran.job_ids)
    return ran.message_ids


@shared_task(name=SWEEP, **TASK_OPTIONS)
def sweep() -> dict[str, int]:
    """Enqueue everything that is due (outbox rows, deadline work, provisioning); returns counts per kind."""
    context = get_context()
    with SWEEP_SECONDS.time():
        prune_broker_files(context)
        return sweep_once(context=context, enqueue_due=enqueue_due, enqueue_delivery=deliver_outbox.delay,
                          enqueue_provision=enqueue_job)


# ---- what the tasks do (plain functions, called directly by tests and the CLI) -------------------


def deliver_batch(*, context: WorkerContext, message_ids: Iterable[int]) -> list[str]:
    """Deliver rows one by one, stopping early if Slack rate-limits us."""
    outcomes: list[str] = []
    ids = [int(message_id) for message_id in message_ids]
    for position, message_id in enumerate(ids):
        outcome = deliver(context=context, message_id=message_id)
        outcomes.append(outcome)
        if outcome is Outcome.RATE_LIMITED:
            # Slack asked us to slow down. The rest stay due, and no longer queued: the next sweep sends them.
            with transaction(context.engine) as session:
                unqueue_messages(session=session, message_ids=ids[position + 1:])
            break
    return outcomes


def decide(*, context: WorkerContext, request_id: int, approver_id: str, outcome: str, reason: str = "",
           channel: str = "", enqueue_jobs: Callable[[list[int]], object] | None = None) -> list[int]:
    """Approve or deny in one transaction; a refused click gets an ephemeral answer. Returns outbox ids;
    webhook provisioning jobs the approval wrote go to `enqueue_jobs` (default: the provision task)."""
    now = context.now()
    try:
        with transaction(context.engine) as session:
            if outcome == access.APPROVE:
                access.approve(session=session, request_id=request_id, approver_id=approver_id, now=now,
                               policy=context.get_policy())
            elif outcome == access.DENY:
                access.deny(session=session, request_id=request_id, approver_id=approver_id, reason=reason,
                            now=now)
            else:
                raise InvalidInput(f"Unknown decision {outcome!r}: approve or deny.")
            ids, jobs = added_message_ids(session), provisioning.added_job_ids(session)
        if jobs:
            (enqueue_jobs or enqueue_provisioning)(jobs)
        return ids
    except REFUSALS as exc:
        # The decision's transaction rolled back; the answer is written in one of its own.
        with transaction(context.engine) as session:
            _refuse(session, request_id=request_id, approver_id=approver_id, channel=channel, error=exc, now=now)
            return added_message_ids(session)


def run_due_item(*, context: WorkerContext, kind: str, item_id: int,
                 enqueue_jobs: Callable[[list[int]], object] | None = None) -> list[int]:
    """Run one due item in one transaction (a no-op if it is no longer due); returns the outbox ids it added.
    Webhook jobs it wrote (a revoke, when a grant a connector set up expires) go to `enqueue_jobs`."""
    due_kind = DueKind(kind)
    now, policy = context.now(), context.get_policy()
    members_of = _members_resolver(context) if due_kind is DueKind.ESCALATION else None
    try:
        # The owner's Slack timezone is asked for before the transaction, never while holding its locks.
        owner_id, tz, gone = (_review_owner(context, item_id) if due_kind is DueKind.REVIEW_SCHEDULE
                              else ("", None, None))
        with transaction(context.engine) as session:
            queued.unmark(session=session, kind=due_kind.value, item_id=item_id)
            if gone:
                # users.info says the owner is gone: their assets are flagged, and stay in the reviews.
                orphans.flag_orphans(session=session, owner_id=owner_id, reason=gone, now=now, policy=policy)
            _run(session, due_kind, item_id, now=now, policy=policy, members_of=members_of, tz=tz)
            ids, jobs = added_message_ids(session), provisioning.added_job_ids(session)
        if jobs:
            (enqueue_jobs or enqueue_provisioning)(jobs)
        return ids
    except REFUSALS as exc:
        # A refusal leaves the row untouched (the transaction rolled back); log it for operators.
        logger.warning("Could not run %s for #%s: %s", due_kind.value, item_id, exc)
        return []


def sweep_once(*, context: WorkerContext, enqueue_due: Callable[[str, int], object],
               enqueue_delivery: Callable[[list[int]], object],
               enqueue_provision: Callable[[int], object] | None = None,
               batch_size: int = BATCH_SIZE, dry_run: bool = False) -> dict[str, int]:
    """Hand what is due as of now, and not already queued, to the enqueuers (ids only); returns how many
    of each kind were handed over. Due webhook jobs go to `enqueue_provision` (default: the provision task).
    A dry run counts the same, enqueues nothing and leaves no mark."""
    now, policy = context.now(), context.get_policy()
    requeue_after = timedelta(seconds=context.settings.outbox_claim_seconds)
    with transaction(context.engine) as session:
        # The outbox keeps its own smaller page: Slack's rate limits, not the sweep, bound delivery.
        outbox_ids = queue_due_message_ids(session=session, now=now, requeue_after=requeue_after)
        due = _due_items(session, now=now, policy=policy)
        handed = queued.mark_unqueued(session=session, items=due, now=now, requeue_after=requeue_after)
        if dry_run:
            session.rollback()
    counts = {OUTBOX: len(outbox_ids), **{kind.value: 0 for kind in DUE_WORK_FIELDS}, PROVISIONING: 0,
              **{kind.value: 0 for kind in DueKind if kind not in DUE_WORK_FIELDS}}
    for kind, _ in handed:
        counts[kind] += 1
    if not dry_run:
        _enqueue_marked(context, outbox_ids, handed, enqueue_due=enqueue_due, enqueue_delivery=enqueue_delivery,
                        enqueue_provision=enqueue_provision or enqueue_job, batch_size=batch_size)
    return counts


def _due_items(session: Session, *, now: datetime, policy: Policy) -> list[tuple[str, int]]:
    """(kind, id) of every due item but outbox rows, in the order the sweep reports the kinds."""
    work = deadlines.due_work(session=session, now=now, policy=policy, limit=SWEEP_LIMIT)
    due = [(kind.value, item_id) for kind, field in DUE_WORK_FIELDS.items() for item_id in getattr(work, field)]
    due += [(PROVISIONING, job_id) for job_id in provisioning.due_job_ids(session=session, now=now, limit=SWEEP_LIMIT)]
    if policy.channels.audit and anchors.anchor_due(session=session, now=now):
        due.append((DueKind.AUDIT_ANCHOR.value, 0))
    due += [(DueKind.REVIEW_SCHEDULE.value, asset_id)
            for asset_id in reviews.assets_to_schedule(session=session, now=now)]
    due += [(DueKind.REVIEW_NUDGE.value, nudge_id)
            for nudge_id in reviews.due_nudge_ids(session=session, now=now, limit=SWEEP_LIMIT)]
    if reviews.escalation_due(session=session, now=now, policy=policy):
        due.append((DueKind.REVIEW_ESCALATION.value, 0))
    due += [(DueKind.RECERT_START.value, asset_id)
            for asset_id in recertification.assets_due(session=session, now=now, limit=SWEEP_LIMIT)]
    due += [(DueKind.RECERT_ESCALATION.value, campaign_id) for campaign_id in
            recertification.escalations_due(session=session, now=now, policy=policy, limit=SWEEP_LIMIT)]
    return due


def _enqueue_marked(context: WorkerContext, outbox_ids: list[int], items: list[tuple[str, int]], *,
                    enqueue_due: Callable[[str, int], object], enqueue_delivery: Callable[[list[int]], object],
                    enqueue_provision: Callable[[int], object], batch_size: int) -> None:
    """Enqueue what the sweep marked; if the broker fails part-way, unmark what it did not take."""
    sent_outbox = sent_items = 0
    try:
        for batch in _batches(outbox_ids, batch_size):
            enqueue_delivery(batch)
            sent_outbox += len(batch)
        for kind, item_id in items:
            if kind == PROVISIONING:
                enqueue_provision(item_id)
            else:
                enqueue_due(kind, item_id)
            sent_items += 1
    except BaseException:
        # Otherwise the rest would wait out the requeue window; unmarked, the next sweep queues them.
        with transaction(context.engine) as session:
            unqueue_messages(session=session, message_ids=outbox_ids[sent_outbox:])
            queued.unmark_all(session=session, items=items[sent_items:])
        raise


def prune_broker_files(context: WorkerContext) -> None:
    """Remove consumed messages of the embedded file broker older than KEEP_PROCESSED."""
    settings = context.settings
    if settings.resolved_broker_url.startswith(FILESYSTEM_BROKER):
        prune_processed(settings.broker_folder, older_than=context.now() - KEEP_PROCESSED)


# ---- enqueue helpers (for the bot and the sweep) -------------------------------------------------


def enqueue_sweep(*, interval: float) -> None:
    """Queue a sweep, for a scheduler ticking every `interval` seconds, that goes stale in a busy queue."""
    # Without an expiry, workers stopped for a day came back to a sweep for every tick they missed.
    # Expiring at one interval went too far: when the queue's wait stays longer than that, as it may
    # under load with a short interval, no sweep ever ran, and nothing was retried. Ten intervals (a
    # minute at least) bounds the pile-up and lets a sweep through any but a long backlog.
    sweep.apply_async(expires=max(SWEEP_EXPIRY_INTERVALS * interval, SWEEP_MIN_EXPIRY_SECONDS))


def enqueue_delivery(message_ids: Iterable[int]) -> bool:
    """Ask a worker to deliver these rows (call after commit); False if the broker is unreachable."""
    ids = [int(message_id) for message_id in message_ids]
    try:
        for batch in _batches(ids, BATCH_SIZE):
            deliver_outbox.delay(batch)
    except (BrokerUnavailable, OSError) as exc:
        # Nothing is lost: the rows are committed and due, and the sweep enqueues them later.
        # The error's type only; its text could carry the broker URL.
        logger.warning("Broker unreachable (%s); the sweep will deliver outbox rows %s later",
                       type(exc).__name__, ids)
        return False
    return True


def decide_now(*, context: WorkerContext, request_id: int, approver_id: str, outcome: str, reason: str = "",
               channel: str = "") -> bool:
    """Record a click in this process, then queue the messages it implies: once recorded, the database
    keeps it whatever happens to Redis or a worker. With the database unreachable, hand the click to a
    worker (which retries until it is back); False only if neither could take it."""
    try:
        ids = decide(context=context, request_id=int(request_id), approver_id=approver_id, outcome=outcome,
                     reason=reason, channel=channel)
    except DatabaseUnavailable:
        return enqueue_decision(request_id, approver_id, outcome, reason, channel)
    enqueue_delivery(ids)  # if the broker is away, the rows are due and the sweep sends them
    return True


def enqueue_decision(request_id: int, approver_id: str, outcome: str, reason: str = "",
                     channel: str = "") -> bool:
    """Ask a worker to record a decision; False if the broker is unreachable (the user should try again)."""
    try:
        decide_request.delay(request_id=int(request_id), approver_id=approver_id, outcome=outcome,
                             reason=reason, channel=channel)
    except (BrokerUnavailable, OSError) as exc:
        # Unlike an outbox row, a click exists nowhere else: nothing will retry it for the user.
        logger.warning("Broker unreachable (%s); %s of request %s by %s was not recorded",
                       type(exc).__name__, outcome, request_id, approver_id)
        return False
    return True


def enqueue_due(kind: str, item_id: int) -> object:
    """Enqueue one `run_due` task (the sweep's enqueuer for deadline work)."""
    return run_due.delay(kind, int(item_id))


def enqueue_job(job_id: int) -> object:
    """Enqueue one `provision` task (the sweep's enqueuer for due webhook jobs)."""
    return provision.delay(int(job_id))


def enqueue_provisioning(job_ids: Iterable[int]) -> bool:
    """Ask a worker to send these webhook jobs (call after commit); False if the broker is unreachable."""
    ids = [int(job_id) for job_id in job_ids]
    try:
        for job_id in ids:
            provision.delay(job_id)
    except (BrokerUnavailable, OSError) as exc:
        # Nothing is lost: the jobs are committed and due, and the sweep enqueues them later.
        logger.warning("Broker unreachable (%s); the sweep will send provisioning jobs %s later",
                       type(exc).__name__, ids)
        return False
    return True


# ---- internals -----------------------------------------------------------------------------------


def _refuse(session: Session, *, request_id: int, approver_id: str, channel: str, error: Exception,
            now: datetime) -> None:
    # The "already decided by @x" answer, only for the one who clicked, where they clicked.
    decided_by = error.decided_by if isinstance(error, AlreadyDecided) else ""
    add_message(session=session, method=OutboxMethod.EPHEMERAL, channel=channel, user=approver_id, now=now,
                topic=f"request:{request_id}",
                payload={"template": "decision_refused", "request_id": request_id, "message": str(error),
                         "decided_by": decided_by})


def _run(session: Session, kind: DueKind, item_id: int, *, now: datetime, policy: Policy,
         members_of: Callable[[str], frozenset[str]] | None, tz: str | None = None) -> bool:
    if kind is DueKind.REVIEW_SCHEDULE:
        return reviews.schedule_nudge(session=session, asset_id=item_id, now=now, tz=tz)
    if kind is DueKind.REVIEW_NUDGE:
        return reviews.send_nudge(session=session, nudge_id=item_id, now=now, policy=policy) is not None
    if kind is DueKind.REVIEW_ESCALATION:
        return bool(reviews.escalate_overdue(session=session, now=now, policy=policy))
    if kind is DueKind.RECERT_START:
        return recertification.start_due(session=session, asset_id=item_id, now=now, policy=policy) is not None
    if kind is DueKind.RECERT_ESCALATION:
        return recertification.escalate(session=session, campaign_id=item_id, now=now, policy=policy)
    if kind is DueKind.REMINDER:
        return deadlines.remind(session=session, request_id=item_id, now=now, policy=policy)
    if kind is DueKind.ESCALATION:
        assert members_of is not None
        return deadlines.escalate(session=session, request_id=item_id, now=now, policy=policy,
                                  members_of=members_of)
    if kind is DueKind.AUDIT_ANCHOR:
        return anchors.anchor_if_due(session=session, now=now, policy=policy) is not None
    if kind is DueKind.REQUEST_EXPIRY:
        return deadlines.expire_request(session=session, request_id=item_id, now=now)
    if kind is DueKind.GRANT_WARNING:
        return deadlines.warn_grant(session=session, grant_id=item_id, now=now, policy=policy)
    return deadlines.end_expired_grant(session=session, grant_id=item_id, now=now)


def _review_owner(context: WorkerContext, asset_id: int) -> tuple[str, str | None, str | None]:
    """The asset's owner, their Slack timezone, and why they are gone when users.info says so
    (deactivated, user_not_found), else None.

    Slack is asked every time a nudge is scheduled (about once a week per owner), so a departure or a
    move to another timezone is noticed; the cached timezone only covers a Slack outage.
    """
    with transaction(context.engine) as session:
        owner_id, cached = reviews.owner_and_cached_tz(session=session, asset_id=asset_id)
    try:
        person = Directory(context.client).user(owner_id)
    except SlackApiError as exc:
        if cached:
            return owner_id, cached, None
        # Scheduled in UTC for now is worse than a minute's wait: refuse, and the next sweep asks again.
        raise Conflict(f"Slack could not tell {owner_id}'s timezone: {exc.response.get('error')}") from exc
    if person is None:
        return owner_id, "UTC", orphans.NOT_FOUND
    return owner_id, person.tz, orphans.DEACTIVATED if person.deleted else None


def _members_resolver(context: WorkerContext) -> Callable[[str], frozenset[str]]:
    policy = context.get_policy()
    directory = Directory(context.client)
    if policy.fallback_group:
        # Ask Slack now, before the transaction: the escalation then reads the directory's cache
        # instead of holding the request's row lock (and SQLite's write lock) across an HTTP call.
        directory.members_of(policy, policy.fallback_group)
    return partial(directory.members_of, policy)


def _batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]
