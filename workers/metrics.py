"""Steward's Prometheus metrics: their definitions, the database figures read at scrape time, and rendering.

Every process records into the metrics defined here (the bot's request and ack latencies, the worker's
tasks and sweeps, every process's Slack calls). With PROMETHEUS_MULTIPROC_DIR set (several gunicorn
workers behind one port), each process writes its samples to that folder and `render_metrics` merges
them, so a scrape sees the whole server rather than whichever process answered.

The outbox backlog, pending requests and overdue reviews are not counted as things happen: the
collector `database_collector(engine, clock)` reads them from the database at each scrape
(workflows/stats.py), so they are right whichever process changed them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from workers.clock import utc_now
from workflows import stats
from workflows.db import DatabaseUnavailable, transaction

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Slack gives three seconds to acknowledge; buckets are finer below that.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)

REQUEST_SECONDS = Histogram("steward_request_seconds", "Time to handle a Slack request, by listener.",
                            ["listener"], buckets=LATENCY_BUCKETS)
ACK_SECONDS = Histogram("steward_ack_seconds", "Time from a Slack request's arrival to its ack, by listener.",
                        ["listener"], buckets=LATENCY_BUCKETS)
TASKS = Counter("steward_tasks", "Celery tasks run, by task name and outcome.", ["task", "outcome"])
TASK_SECONDS = Histogram("steward_task_seconds", "Celery task run time, by task name.", ["task"],
                         buckets=LATENCY_BUCKETS)
SLACK_API_CALLS = Counter("steward_slack_api_calls", "Slack Web API calls, by method and status.",
                          ["method", "status"])
SWEEP_SECONDS = Histogram("steward_sweep_seconds", "Time one sweep takes to find and enqueue due work.",
                          buckets=LATENCY_BUCKETS)
# Read from the database at scrape time by `database_collector`; named here with the others.
OUTBOX_BACKLOG = "steward_outbox_backlog"
OUTBOX_OLDEST_AGE = "steward_outbox_oldest_age_seconds"
PENDING_REQUESTS = "steward_pending_requests"
OVERDUE_REVIEWS = "steward_overdue_reviews"

__all__ = ["ACK_SECONDS", "CONTENT_TYPE_LATEST", "OUTBOX_BACKLOG", "OUTBOX_OLDEST_AGE", "OVERDUE_REVIEWS",
           "PENDING_REQUESTS", "REQUEST_SECONDS", "SLACK_API_CALLS", "SWEEP_SECONDS", "TASKS", "TASK_SECONDS",
           "database_collector", "render_metrics"]


def render_metrics(*, collectors: tuple[Collector, ...] = ()) -> tuple[bytes, str]:
    """The exposition text of every metric (merged across processes when multiprocess), and its type."""
    base: Collector = (prometheus_multiprocess.MultiProcessCollector(None) if os.environ.get(MULTIPROC_ENV)
                       else REGISTRY)
    return generate_latest(_Merged((base, *collectors))), CONTENT_TYPE_LATEST


def database_collector(engine: Engine, clock: Callable[[], datetime] | None = None) -> Collector:
    """A collector reading the outbox backlog, pending requests and overdue reviews at each scrape."""
    return _DatabaseCollector(engine, clock or utc_now)


class _Merged(Collector):
    """Several collectors read as one, for one scrape (no registry: nothing outlives the call)."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = tuple(collectors)

    def collect(self) -> Iterator[Metric]:
        """Every metric of every collector, in order."""
        for collector in self._collectors:
            yield from collector.collect()


class _DatabaseCollector(Collector):
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self._engine, self._clock = engine, clock

    def collect(self) -> Iterator[Metric]:
        """The database figures as gauges; none at all when the database cannot be read (see /readyz)."""
        try:
            with transaction(self._engine) as session:
                figures = stats.read_stats(session=session, now=self._clock())
        except (SQLAlchemyError, DatabaseUnavailable) as exc:
            # The process metrics are still worth a scrape; an absent gauge is what alerts notice.
            logger.warning("Could not read the database figures for /metrics (%s)", type(exc).__name__)
            return
        yield GaugeMetricFamily(OUTBOX_BACKLOG, "Outbox messages waiting to be sent (due or backing off).",
                                value=figures.outbox_backlog)
        yield GaugeMetricFamily(OUTBOX_OLDEST_AGE, "Age of the oldest outbox message waiting to be sent.",
                                value=figures.outbox_oldest_age_seconds)
        yield GaugeMetricFamily(PENDING_REQUESTS, "Access requests waiting for a decision.",
                                value=figures.pending_requests)
        yield GaugeMetricFamily(OVERDUE_REVIEWS, "Live assets whose review date has passed.",
                                value=figures.overdue_reviews)
