"""Steward's Prometheus metrics: their definitions, and rendering them for a /metrics endpoint.

Every process records into the metrics defined here. With PROMETHEUS_MULTIPROC_DIR set (several
gunicorn workers behind one port), each process writes its samples to that folder and `render_metrics`
merges them, so a scrape sees the whole server rather than whichever process answered.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.registry import Collector

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
# Read from the database at scrape time (see the collectors passed to render_metrics); defined here
# so every metric name lives in one place.
OUTBOX_BACKLOG = "steward_outbox_backlog"
OUTBOX_OLDEST_AGE = "steward_outbox_oldest_age_seconds"
PENDING_REQUESTS = "steward_pending_requests"
OVERDUE_REVIEWS = "steward_overdue_reviews"

__all__ = ["ACK_SECONDS", "CONTENT_TYPE_LATEST", "Gauge", "REQUEST_SECONDS", "SLACK_API_CALLS",
           "SWEEP_SECONDS", "TASKS", "TASK_SECONDS", "render_metrics"]


def render_metrics(*, collectors: tuple[Collector, ...] = ()) -> tuple[bytes, str]:
    """The exposition text of every metric (merged across processes when multiprocess), and its type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry  # noqa: PLC0415
        registry = _with_extra(registry, collectors)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _with_extra(base: CollectorRegistry, collectors: tuple[Collector, ...]) -> CollectorRegistry:
    if not collectors:
        return base
    registry = CollectorRegistry()
    registry.register(_Chain(base))
    for collector in collectors:
        registry.register(collector)
    return registry


class _Chain(Collector):
    """Another registry's metrics, so per-scrape collectors can join the process-wide ones."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self):
        """Everything the wrapped registry collects."""
        return self._registry.collect()
