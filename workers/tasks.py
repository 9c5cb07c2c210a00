"""Steward's Celery tasks, kept thin: ids in, one call, delivery; plus the bot's enqueue helper.

Tasks are shared tasks, so they register on whichever app `make_celery` builds. Each is
idempotent and runs with acks_late and reject_on_worker_lost: a task lost with its worker is
redelivered, and running one twice sends nothing twice (delivery claims rows in the database).
Nothing is retried with a countdown; a row that must wait stays in the database with its
`next_attempt_at`, and the once-a-minute sweep enqueues it again when it is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerUnavailable

from workers.celery_app import FILESYSTEM_BROKER, WorkerContext, get_context, prune_processed
from workers.delivery import Outcome, deliver
from workflows.db import transaction
from workflows.outbox import due_message_ids

logger = logging.getLogger(__name__)

DELIVER_OUTBOX = "steward.deliver_outbox"
SWEEP = "steward.sweep"
BATCH_SIZE = 20
# Consumed broker messages kept on disk for a while (for debugging), then removed by the sweep.
KEEP_PROCESSED = timedelta(days=1)
TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name=DELIVER_OUTBOX, **TASK_OPTIONS)
def deliver_outbox(message_ids: list[int]) -> list[str]:
    """Deliver these outbox rows to Slack."""
    return deliver_batch(context=get_context(), message_ids=message_ids)


@shared_task(name=SWEEP, **TASK_OPTIONS)
def sweep() -> int:
    """Enqueue delivery of every outbox row that is due; returns how many."""
    context = get_context()
    _prune_broker_files(context)
    return sweep_outbox(context=context, enqueue=deliver_outbox.delay)


def deliver_batch(*, context: WorkerContext, message_ids: Iterable[int]) -> list[str]:
    """Deliver rows one by one, stopping early if Slack rate-limits us."""
    outcomes: list[str] = []
    for message_id in message_ids:
        outcome = deliver(context=context, message_id=int(message_id))
        outcomes.append(outcome)
        if outcome is Outcome.RATE_LIMITED:
            # Slack asked us to slow down. The rest stay due; the sweep sends them in a minute.
            break
    return outcomes


def sweep_outbox(*, context: WorkerContext, enqueue: Callable[[list[int]], object],
                 batch_size: int = BATCH_SIZE) -> int:
    """Hand every due outbox row to `enqueue` in batches; returns how many rows."""
    with transaction(context.engine) as session:
        ids = due_message_ids(session=session, now=context.now())
    for batch in _batches(ids, batch_size):
        enqueue(batch)
    return len(ids)


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


def _prune_broker_files(context: WorkerContext) -> None:
    settings = context.settings
    if settings.resolved_broker_url.startswith(FILESYSTEM_BROKER):
        prune_processed(settings.broker_folder, older_than=context.now() - KEEP_PROCESSED)


def _batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]
