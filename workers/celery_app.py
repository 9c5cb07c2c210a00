"""The Celery app and the worker's context (DB engine, Slack client, settings, policy, clock).

Nothing is read at import time: `make_celery(settings)` builds an app from settings passed in,
and `get_app()` (or the lazy module attribute `app`, which `celery -A workers.celery_app`
finds) builds one from `Settings()` the first time it is asked for. Tasks reach the engine,
the Slack client, the policy and the clock through the installed `WorkerContext`, so tests can
swap in a test database, a client pointed at the fake Slack API, a policy and a fixed clock with
`configure()`.

`make_celery` also connects, once, the signal receivers that make the worker observable: task
metrics (TASKS, TASK_SECONDS) and the task id in every log line of the task (workers/logs.py), and
Celery leaving the logging that `configure_logging` set up alone, so worker logs are JSON too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, setup_logging, task_postrun, task_prerun, worker_process_init
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session

from workers import logs
from workers.clock import clock_for, utc_now
from workers.file_broker import use_whole_message_files
from workers.metrics import TASK_SECONDS, TASKS
from workers.slack_client import make_slack_client
from workflows.db import make_engine
from workflows.policy import Policy, load_policy
from workflows.settings import Settings

FILESYSTEM_BROKER = "filesystem://"
use_whole_message_files()  # before any connection: every process that publishes or consumes imports this

Renderer = Callable[[Session, dict[str, Any]], dict[str, Any]]


@dataclass
class WorkerContext:
    """What tasks need from the outside world; `renderer` None means bot.views.messages.render_outbox."""

    engine: Engine
    client: WebClient
    settings: Settings
    now: Callable[[], datetime] = utc_now
    renderer: Renderer | None = None
    # None: loaded from settings.steward_policy the first time a task asks (see get_policy).
    policy: Policy | None = None

    def get_policy(self) -> Policy:
        """The policy that routes and times the work, loaded from the settings if none was given."""
        if self.policy is None:
            self.policy = load_policy(self.settings.steward_policy)
        return self.policy


_lock = threading.RLock()  # get_app() builds the app while holding it
_context: WorkerContext | None = None
_context_settings: Settings | None = None
_app: Celery | None = None


def make_celery(settings: Settings, *, context: WorkerContext | None = None) -> Celery:
    """Build the Celery app for `settings` and register Steward's tasks on it."""
    # Importing the tasks module registers its shared tasks on every app, this one included;
    # it imports this module, so the import waits until it is needed.
    import workers.tasks  # noqa: F401, PLC0415

    app = Celery("steward", broker=settings.resolved_broker_url, set_as_current=True)
    app.conf.update(_celery_config(settings))
    # Default as well as current: the bot enqueues from its own threads, which would otherwise
    # see Celery's fallback app (and its AMQP broker) instead of this one.
    app.set_default()
    _install(settings, context, app)
    _connect_signals()
    return app


def get_app() -> Celery:
    """The process-wide app: the last one `make_celery` built, else one from `Settings()` (for the CLI)."""
    global _app
    with _lock:
        if _app is None:
            _app = make_celery(Settings())
        return _app


def configure(context: WorkerContext) -> None:
    """Install the context tasks use (tests pass an engine, a fake-Slack client and a clock)."""
    global _context
    with _lock:
        _context = context


def get_context() -> WorkerContext:
    """The installed context, built from the app's settings on first use if none was installed."""
    global _context
    with _lock:
        if _context is None:
            if _context_settings is None:
                raise RuntimeError("No worker context: call make_celery(settings) or configure(context).")
            _context = build_context(_context_settings)
        return _context


def build_context(settings: Settings, *, engine: Engine | None = None) -> WorkerContext:
    """A context for production: the configured database (or `engine`), Slack Web API and policy."""
    return WorkerContext(engine=engine or make_engine(settings.resolved_database_url),
                         client=make_slack_client(settings), settings=settings,
                         policy=load_policy(settings.steward_policy), now=clock_for(settings))


def __getattr__(name: str) -> Any:
    # `celery -A workers.celery_app` looks up `app`; build it on that first access, not at import.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _install(settings: Settings, context: WorkerContext | None, app: Celery) -> None:
    # A new app means new settings: drop any older context so the next task builds one from them.
    global _app, _context, _context_settings
    with _lock:
        _app, _context_settings, _context = app, settings, context


@worker_process_init.connect
def _forget_inherited_connections(**_: Any) -> None:
    # A prefork child must not share its parent's pooled DB connections; it opens its own.
    with _lock:
        if _context is not None:
            _context.engine.dispose(close=False)


# ---- signals: task metrics, task ids in the logs, and logging left to configure_logging -----------

# Task id -> when it started and the TASK_ID token to reset; prerun and postrun run in the task's thread.
_running: dict[str, tuple[float, Token]] = {}


def _connect_signals() -> None:
    # dispatch_uid makes connecting idempotent: every make_celery call, one receiver each.
    task_prerun.connect(_task_started, dispatch_uid="steward.task_started", weak=False)
    task_postrun.connect(_task_finished, dispatch_uid="steward.task_finished", weak=False)
    setup_logging.connect(_keep_logging, dispatch_uid="steward.keep_logging", weak=False)
    celeryd_init.connect(_quiet_banner, dispatch_uid="steward.quiet_banner", weak=False)


def _task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _running[task_id] = (time.perf_counter(), logs.TASK_ID.set(task_id))


def _task_finished(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    # postrun follows every run, whatever came of it: its state is the outcome (success, failure, retry...).
    name = getattr(task, "name", None) or "unknown"
    TASKS.labels(task=name, outcome=(state or "unknown").lower()).inc()
    started = _running.pop(task_id, None) if task_id else None
    if started is None:
        return
    TASK_SECONDS.labels(task=name).observe(time.perf_counter() - started[0])
    try:
        logs.TASK_ID.reset(started[1])
    except ValueError:  # set in another context (never in Celery's pools); clear it all the same
        logs.TASK_ID.set(None)


def _keep_logging(**_: Any) -> None:
    # Answering this signal stops Celery from replacing the root logger's handlers with its own text
    # ones; `steward worker` configured logging before starting Celery, `celery -A` has not yet.
    with _lock:
        settings = _context_settings
    if not logs.is_configured() and settings is not None:
        logs.configure_logging(settings)


def _quiet_banner(instance: Any = None, **_: Any) -> None:
    # The start-up banner is printed, not logged: in JSON it would be the one line a collector can't parse.
    with _lock:
        settings = _context_settings
    if instance is not None and settings is not None and settings.log_format.lower() == "json":
        instance.quiet = True


def _celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "timezone": "UTC",
        "enable_utc": True,
    }
    broker_url = settings.resolved_broker_url
    if broker_url.startswith(FILESYSTEM_BROKER):
        config["broker_transport_options"] = filesystem_transport_options(settings.broker_folder)
    elif broker_url.startswith(("redis://", "rediss://")):
        # Tasks never use long ETAs, which this would also cap (decision retries wait seconds).
        config["broker_transport_options"] = {"visibility_timeout": settings.broker_visibility_timeout_seconds}
    return config


def filesystem_transport_options(folder: Path) -> dict[str, Any]:
    """Kombu filesystem-transport options for a broker in `folder`, creating its folders."""
    folder = folder.resolve()
    processed, control = folder / "processed", folder / "control"
    for path in (folder, processed, control):
        path.mkdir(parents=True, exist_ok=True)
    return {
        # In and out are the same folder: producers and the worker meet there, across processes.
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        # Consuming a message moves its file; inside the broker folder that move is an atomic
        # rename, so two workers can never both take one message (a move to /tmp may be a copy).
        "store_processed": True,
        "processed_folder": str(processed),
        # Fanout bindings (worker remote control) would otherwise land in the current directory.
        "control_folder": str(control),
        # How often an idle worker lists the folder: kombu's 1 s default would add up to a second to
        # every click's answer; listing a small folder ten times a second costs next to nothing.
        "polling_interval": 0.1,
    }


def prune_processed(folder: Path, *, older_than: datetime) -> int:
    """Delete consumed messages of the file broker in `folder` older than `older_than`; returns how many."""
    processed = folder / "processed"
    if not processed.is_dir():
        return 0
    cutoff, removed = older_than.timestamp(), 0
    for entry in processed.iterdir():
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # another worker pruned it first
    return removed
