"""/metrics: every metric Steward promises shows up in `render_metrics` once its code has run (a signed Slack
request, a Slack call, a task, a sweep), and the database collector reads a seeded database right."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, delete, update

from bot.app import create_app
from steward.sandbox import signing
from tests.bot.conftest import Harness, as_in_production, bot_policy, fake, harness  # noqa: F401 - fixtures used below
from tests.factories import OWNER, deny_request, make_asset, make_request, retire
from tests.workers.conftest import Clock, fresh_celery  # noqa: F401 - fixture used below
from workers.celery_app import WorkerContext, make_celery
from workers.metrics import database_collector, render_metrics
from workers.slack_client import make_slack_client
from workers.tasks import SWEEP
from workflows.db import transaction
from workflows.models import Asset, OutboxMessage
from workflows.outbox import OutboxMethod, add_message, mark_sent
from workflows.policy import Policy
from workflows.settings import Settings

REQUIRED = ("steward_request_seconds", "steward_ack_seconds", "steward_tasks", "steward_task_seconds",
            "steward_slack_api_calls", "steward_outbox_backlog", "steward_outbox_oldest_age_seconds",
            "steward_sweep_seconds", "steward_pending_requests", "steward_overdue_reviews")


def sample(name: str, **labels: str) -> float:
    """The current value of one sample in the process's registry (0 when it was never recorded)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(*collectors) -> dict[str, list]:
    """`render_metrics` parsed: each metric family's samples by family name."""
    body, content_type = render_metrics(collectors=collectors)
    assert content_type.startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(body.decode())}


def gauge(families: dict[str, list], name: str) -> float:
    """The value of an unlabelled gauge in a scrape."""
    (only,) = families[name]
    return only.value


def instrumented(harness: Harness, *, production: bool) -> Harness:
    """The harness's app built with the configured Slack client (which counts Slack calls and never sleeps
    here); in `production`, the work after each ack runs on its own threads, after Bolt has answered."""
    client = make_slack_client(harness.ctx.settings, sleep=lambda seconds: None)
    if production:
        return as_in_production(harness, client=client)
    return Harness(app=create_app(harness.ctx, client=client), fake=harness.fake, ctx=harness.ctx,
                   enqueued=harness.enqueued)


@pytest.fixture
def synchronous(harness: Harness) -> Harness:
    """The instrumented app, answering Slack only once the listener is done."""
    return instrumented(harness, production=False)


def test_every_metric_shows_up_once_its_code_ran(synchronous, engine, bot_policy, now, tmp_path, fresh_celery):
    listener = "command:register"
    before = {"request": sample("steward_request_seconds_count", listener=listener),
              "ack": sample("steward_ack_seconds_count", listener=listener),
              "views": sample("steward_slack_api_calls_total", method="views.open", status="ok"),
              "sweeps": sample("steward_sweep_seconds_count"),
              "tasks": sample("steward_tasks_total", task=SWEEP, outcome="success"),
              "task_seconds": sample("steward_task_seconds_count", task=SWEEP)}

    # A signed slash command whose listener opens a modal through the Web API.
    response = synchronous.command("register dataset")
    assert response.status == 200 and synchronous.opened_view()["callback_id"]
    # The sweep, run as a worker runs a task (signals and all), on the same database.
    settings = Settings(_env_file=None, steward_home=tmp_path / "home")
    app = make_celery(settings, context=WorkerContext(engine=engine, client=make_slack_client(settings),
                                                      settings=settings, now=lambda: now, policy=bot_policy))
    assert app.tasks[SWEEP].apply().successful()

    assert sample("steward_request_seconds_count", listener=listener) == before["request"] + 1
    assert sample("steward_ack_seconds_count", listener=listener) == before["ack"] + 1
    assert sample("steward_slack_api_calls_total", method="views.open", status="ok") == before["views"] + 1
    assert sample("steward_sweep_seconds_count") == before["sweeps"] + 1
    assert sample("steward_tasks_total", task=SWEEP, outcome="success") == before["tasks"] + 1
    assert sample("steward_task_seconds_count", task=SWEEP) == before["task_seconds"] + 1
    families = scrape(database_collector(engine, lambda: now))
    assert set(REQUIRED) <= set(families), f"missing: {set(REQUIRED) - set(families)}"


def test_a_failed_task_counts_as_a_failure(engine, bot_policy, now, tmp_path, fresh_celery):
    settings = Settings(_env_file=None, steward_home=tmp_path / "home")
    app = make_celery(settings, context=WorkerContext(engine=engine, client=make_slack_client(settings),
                                                      settings=settings, now=lambda: now, policy=bot_policy))
    task = "steward.run_due"
    before = sample("steward_tasks_total", task=task, outcome="failure")

    result = app.tasks[task].apply(args=("no-such-kind", 1))

    assert result.failed()
    assert sample("steward_tasks_total", task=task, outcome="failure") == before + 1


def test_ack_time_is_observed_when_the_listener_acks_not_when_it_finishes(harness, engine, bot_policy, now):
    # In production Bolt answers when the listener returns, right after its ack, and the rest of its work
    # runs on other threads: the request is done (REQUEST_SECONDS) only when that work is.
    async_harness = instrumented(harness, production=True)
    listener = "command:register"
    before = sample("steward_request_seconds_count", listener=listener)
    release = threading.Event()
    harness.fake.on("views.open", lambda args: (release.wait(10), {"ok": True, "view": {"id": "V1"}})[1])

    assert async_harness.command("register dataset").status == 200
    assert sample("steward_ack_seconds_count", listener=listener) >= 1
    assert sample("steward_request_seconds_count", listener=listener) == before, "the listener is still at work"
    release.set()
    for _ in range(200):
        if sample("steward_request_seconds_count", listener=listener) == before + 1:
            break
        release.wait(0.05)
    assert sample("steward_request_seconds_count", listener=listener) == before + 1


def test_a_forged_request_is_timed_as_unverified(synchronous):
    before = sample("steward_request_seconds_count", listener="unverified")
    body, headers = signing.slash_command(text="register dataset", secret="not-the-signing-secret")

    assert synchronous.dispatch(body, headers).status == 401

    assert sample("steward_request_seconds_count", listener="unverified") == before + 1
    assert sample("steward_ack_seconds_count", listener="unverified") == 0, "nothing acked a forgery"


def seed(engine: Engine, *, policy: Policy, now: datetime) -> None:
    """One pending request (and one denied), one overdue review (and one retired, one not yet due), and in
    the outbox one row waiting since 90 seconds ago, one sent and one given up on."""
    waiting, overdue = make_asset(engine, policy=policy, now=now), make_asset(engine, policy=policy, now=now,
                                                                              name="Old events")
    gone = retire(engine, make_asset(engine, policy=policy, now=now, name="Gone events"), policy=policy, now=now)
    make_request(engine, waiting, policy=policy, now=now)
    deny_request(engine, make_request(engine, overdue, policy=policy, now=now), OWNER, now=now)
    with transaction(engine) as session:
        session.exec(update(Asset).where(Asset.id == overdue.id).values(next_review_due=now - timedelta(days=1)))
        session.exec(update(Asset).where(Asset.id == gone.id).values(next_review_due=now - timedelta(days=30)))
        session.exec(delete(OutboxMessage))
    with transaction(engine) as session:
        add_message(session=session, method=OutboxMethod.POST, payload={}, now=now - timedelta(seconds=90),
                    channel="C1")
        sent = add_message(session=session, method=OutboxMethod.POST, payload={}, now=now - timedelta(hours=2),
                           channel="C1")
        mark_sent(session=session, message=sent, channel="C1", ts="1.1", now=now - timedelta(hours=1))
        given_up = add_message(session=session, method=OutboxMethod.POST, payload={}, now=now - timedelta(days=3),
                               channel="C1")
        given_up.next_attempt_at = None
        session.add(given_up)


def test_the_database_collector_reads_the_figures_as_of_its_clock(engine, policy, now):
    seed(engine, policy=policy, now=now)
    clock = Clock(now)

    families = scrape(database_collector(engine, clock))

    assert gauge(families, "steward_outbox_backlog") == 1
    assert gauge(families, "steward_outbox_oldest_age_seconds") == 90
    assert gauge(families, "steward_pending_requests") == 1
    assert gauge(families, "steward_overdue_reviews") == 1
    clock.advance(seconds=30)
    assert gauge(scrape(database_collector(engine, clock)), "steward_outbox_oldest_age_seconds") == 120


def test_an_empty_outbox_has_no_age(engine, now):
    families = scrape(database_collector(engine, lambda: now))

    assert gauge(families, "steward_outbox_backlog") == 0
    assert gauge(families, "steward_outbox_oldest_age_seconds") == 0


def test_an_unreachable_database_leaves_the_other_metrics_alone(now, tmp_path):
    from workflows.db import make_engine

    nowhere = make_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        families = scrape(database_collector(nowhere, lambda: now))
    finally:
        nowhere.dispose()

    assert "steward_outbox_backlog" not in families
    assert "steward_slack_api_calls" in families
