"""The Celery app: the embedded file broker, reliability options, and the tasks called directly."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import pytest
from celery.app.utils import find_app
from celery.signals import worker_process_init

from tests.workers.conftest import add, load, run_message, take_messages
from workers import celery_app
from workers.celery_app import WorkerContext, configure, get_context, make_celery, prune_processed
from workers.delivery import Outcome
from workers.tasks import (
    DECIDE_REQUEST,
    DELIVER_OUTBOX,
    RUN_DUE,
    SWEEP,
    deliver_batch,
    enqueue_delivery,
    enqueue_sweep,
    sweep_once,
)
from workflows.db import transaction
from workflows.outbox import due_message_ids
from workflows.settings import Settings


@pytest.fixture(autouse=True)
def _fresh_module_state(fresh_celery):
    # The app and context are process-wide; give each test its own and restore them afterwards.
    return fresh_celery


# -- configuration ---------------------------------------------------------------------


def test_default_settings_give_the_filesystem_broker_with_its_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("STEWARD_HOME", str(tmp_path / "home"))

    app = make_celery(Settings(_env_file=None))

    folder = (tmp_path / "home" / "broker").resolve()
    options = app.conf.broker_transport_options
    assert app.conf.broker_url == "filesystem://"
    with app.connection_for_write() as conn:
        assert conn.transport.driver_type == "filesystem"
    assert options["data_folder_in"] == options["data_folder_out"] == str(folder)
    assert options["processed_folder"] == str(folder / "processed")
    assert (folder / "processed").is_dir()
    assert (folder / "control").is_dir()


def test_tasks_are_acked_late_and_rejected_when_the_worker_is_lost(settings):
    app = make_celery(settings)

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_ignore_result is True
    assert app.conf.task_serializer == "json"
    assert app.conf.broker_connection_retry_on_startup is True
    for name in (DELIVER_OUTBOX, DECIDE_REQUEST, RUN_DUE, SWEEP):
        task = app.tasks[name]
        assert (task.acks_late, task.reject_on_worker_lost, task.ignore_result) == (True, True, True)


def test_redis_gets_a_visibility_timeout_and_no_broker_folder(tmp_path):
    settings = Settings(_env_file=None, steward_home=tmp_path / "home", broker_url="redis://127.0.0.1:6379/0")

    app = make_celery(settings)

    assert app.conf.broker_url == "redis://127.0.0.1:6379/0"
    assert app.conf.broker_transport_options["visibility_timeout"] >= 3600
    assert not (tmp_path / "home" / "broker").exists()


def test_the_app_is_built_lazily_for_the_worker_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("STEWARD_HOME", str(tmp_path / "home"))
    assert "app" not in vars(celery_app)  # nothing was built when the module was imported
    assert not (tmp_path / "home").exists()

    found = find_app("workers.celery_app")  # what `celery -A workers.celery_app worker` does

    assert found is celery_app.get_app() is celery_app.app
    folder = (tmp_path / "home" / "broker").resolve()
    assert found.conf.broker_transport_options["data_folder_in"] == str(folder)


def test_the_context_defaults_to_the_settings(tmp_path):
    settings = Settings(_env_file=None, steward_home=tmp_path / "home", slack_bot_token="xoxb-configured",
                        slack_api_url="http://127.0.0.1:9/api/")
    make_celery(settings)

    context = get_context()

    try:
        assert context.settings is settings
        assert context.engine.url.database == str(tmp_path / "home" / "steward.db")
        assert context.client.base_url == "http://127.0.0.1:9/api/"
        assert context.client.token == "xoxb-configured"
        # The one configured client (workers/slack_client.py), waiting out Retry-After up to the settings' cap.
        assert any(getattr(handler, "max_wait_seconds", None) == settings.slack_retry_max_wait_seconds
                   for handler in context.client.retry_handlers)
        assert context.now().tzinfo is not None
        assert context.policy is not None  # loaded from STEWARD_POLICY (here: the default)
    finally:
        context.engine.dispose()


def test_configure_replaces_the_context(settings, sqlite_engine, client, clock):
    app = make_celery(settings)
    injected = WorkerContext(engine=sqlite_engine, client=client, settings=settings, now=clock)

    configure(injected)

    assert get_context() is injected
    assert celery_app.get_app() is app  # the app the composition root built, not a second one


def test_a_prefork_child_drops_the_inherited_db_connections(settings, client):
    class Engine:
        disposed: list[bool] = []

        def dispose(self, close: bool = True) -> None:
            self.disposed.append(close)

    engine = Engine()
    configure(WorkerContext(engine=engine, client=client, settings=settings))

    worker_process_init.send(sender=None)

    assert engine.disposed == [False]  # forget the parent's connections without closing them


def test_no_context_without_an_app_or_configure():
    with pytest.raises(RuntimeError, match="No worker context"):
        get_context()


# -- the tasks, called directly ------------------------------------------------------------


def test_an_enqueued_delivery_crosses_the_file_broker_and_is_delivered(engine, context, settings, fake, now):
    app = make_celery(settings, context=context)
    ids = [add(engine, now, channel="C1", text="one"), add(engine, now, channel="C2", text="two")]

    assert enqueue_delivery(ids) is True

    [message] = take_messages(app)
    assert message.headers["task"] == DELIVER_OUTBOX
    assert run_message(app, message) == [Outcome.SENT, Outcome.SENT]
    assert [m["text"] for m in fake.messages("C1") + fake.messages("C2")] == ["one", "two"]
    assert take_messages(app) == []  # consumed once, by one consumer


def test_the_sweep_task_enqueues_what_is_due_and_the_deliveries_send_it(engine, context, settings, fake, now):
    app = make_celery(settings, context=context)
    due = [add(engine, now, channel="C1", text=f"m{i}") for i in range(3)]
    app.tasks[DELIVER_OUTBOX].run([due[0]])  # already sent: not swept again

    assert app.tasks[SWEEP].run()["outbox"] == 2

    [message] = take_messages(app)
    assert message.decode()[0] == [due[1:]]
    run_message(app, message)
    assert sorted(m["text"] for m in fake.messages("C1")) == ["m0", "m1", "m2"]
    assert len(fake.calls_to("chat.postMessage")) == 3


def test_the_sweep_batches_and_skips_rows_backing_off(engine, context, fake, clock, now):
    ids = [add(engine, now, channel="C1") for _ in range(5)]
    fake.fail_next("chat.postMessage", status=503)
    assert deliver_batch(context=context, message_ids=[ids[0]]) == [Outcome.RETRYING]  # backs off 2 s
    batches: list[list[int]] = []

    def sweep(batch_size: int) -> int:
        return sweep_once(context=context, enqueue_due=lambda *_: None, enqueue_delivery=batches.append,
                          batch_size=batch_size)["outbox"]

    assert sweep(2) == 4
    assert batches == [ids[1:3], ids[3:5]]
    clock.advance(seconds=2)
    assert sweep(10) == 1  # the retry, now due; the four queued rows wait for their task
    assert batches[-1] == [ids[0]]


def test_a_queued_row_is_queued_again_only_once_claimed_or_once_its_task_counts_as_lost(
        engine, context, fake, clock, now):
    ids = [add(engine, now, channel="C1") for _ in range(2)]
    batches: list[list[int]] = []

    def sweep() -> list[int]:
        batches.clear()
        sweep_once(context=context, enqueue_due=lambda *_: None, enqueue_delivery=batches.append)
        return [message_id for batch in batches for message_id in batch]

    assert sweep() == ids
    clock.advance(seconds=30)
    assert sweep() == []  # still waiting in the broker: a backlog is not queued twice
    fake.fail_next("chat.postMessage", status=503)
    assert deliver_batch(context=context, message_ids=[ids[0]]) == [Outcome.RETRYING]  # the claim clears the mark
    clock.advance(seconds=2)
    assert sweep() == [ids[0]]  # due again after its backoff, and no longer in the broker
    clock.advance(seconds=context.settings.outbox_claim_seconds)
    assert sweep() == [ids[1], ids[0]]  # neither task reached a worker in a whole claim window: lost


@pytest.mark.parametrize(("interval", "expires_after"), [(60, 600), (1, 60)])
def test_a_queued_sweep_expires_after_ten_intervals_or_a_minute(settings, interval, expires_after):
    app = make_celery(settings)
    before = datetime.now(UTC)

    enqueue_sweep(interval=interval)

    [message] = take_messages(app)
    assert message.headers["task"] == SWEEP
    expires = datetime.fromisoformat(message.headers["expires"])
    assert before + timedelta(seconds=expires_after - 1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(seconds=expires_after + 1)


def test_a_rate_limited_batch_stops_and_leaves_the_rest_due(engine, context, settings, fake, now):
    app = make_celery(settings, context=context)
    ids = [add(engine, now, channel="C1") for _ in range(3)]
    batches: list[list[int]] = []
    sweep_once(context=context, enqueue_due=lambda *_: None, enqueue_delivery=batches.append)
    fake.fail_next("chat.postMessage", retry_after=30)

    outcomes = app.tasks[DELIVER_OUTBOX].run(*batches)

    assert outcomes == [Outcome.RATE_LIMITED]
    assert len(fake.calls_to("chat.postMessage")) == 1
    with transaction(engine) as session:
        assert due_message_ids(session=session, now=now) == ids[1:]
    # The rows the batch did not reach are no longer marked queued: the next sweep hands them out.
    assert [load(engine, message_id).queued_at for message_id in ids[1:]] == [None, None]
    batches.clear()
    sweep_once(context=context, enqueue_due=lambda *_: None, enqueue_delivery=batches.append)
    assert batches == [ids[1:]]
    assert load(engine, ids[0]).next_attempt_at == now + timedelta(seconds=30)


def test_enqueue_without_a_broker_warns_and_loses_nothing(sqlite_engine, tmp_path, now, caplog):
    make_celery(Settings(_env_file=None, steward_home=tmp_path / "home", broker_url="redis://127.0.0.1:1/0"))
    message_id = add(sqlite_engine, now, channel="C1")
    caplog.set_level(logging.WARNING, logger="workers.tasks")

    assert enqueue_delivery([message_id]) is False

    assert "sweep will deliver" in caplog.text
    with transaction(sqlite_engine) as session:
        assert due_message_ids(session=session, now=now) == [message_id]


def test_prune_processed_removes_only_old_broker_files(tmp_path, now):
    processed = tmp_path / "broker" / "processed"
    processed.mkdir(parents=True)
    old, recent = processed / "old.celery.msg", processed / "recent.celery.msg"
    for path, age in ((old, timedelta(days=2)), (recent, timedelta(hours=1))):
        path.write_text("{}")
        stamp = (now - age).timestamp()
        os.utime(path, (stamp, stamp))

    removed = prune_processed(tmp_path / "broker", older_than=now - timedelta(days=1))

    assert removed == 1
    assert not old.exists() and recent.exists()
