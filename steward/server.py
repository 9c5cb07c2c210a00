"""Serving the bot: HTTP on gunicorn (worker processes, graceful shutdown), or Socket Mode beside a health port.

In HTTP mode the master process only binds the port and supervises; each gunicorn worker builds its own
Bolt app, database pool and Celery connection after the fork (`BotServer.load`), so no connection is
ever shared across processes. The workers' Prometheus samples meet in a multiprocess folder, which
/metrics merges, so a scrape sees the whole server whichever worker answers it.

Nothing from bot/ or workers/ is imported at module level: prometheus_client picks its multiprocess mode
when first imported, so `steward serve` calls `use_multiprocess_metrics` before anything imports it.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from workflows.settings import Settings

if TYPE_CHECKING:
    from prometheus_client.registry import Collector
    from slack_bolt import App
    from sqlalchemy import Engine

    from workers.health import WSGIApp

log = logging.getLogger("steward.server")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the variable prometheus_client reads
# How long a thread may hold the GIL while another waits for it (Python's default is 5 ms). A thread
# answering Slack gives the GIL up at every socket call and, with listeners busy after their acks, waited
# up to 5 ms each time to get it back. On `bench --only ack`, paired runs at 64 concurrent: search acks
# p50 56–87 ms at 1 ms against 205–210 ms at 5 ms; no throughput cost was visible there.
GIL_SWITCH_SECONDS = 0.001


def use_multiprocess_metrics() -> None:
    """Have prometheus_client write to a multiprocess folder: a private temporary one, removed when this
    process exits, unless the operator set PROMETHEUS_MULTIPROC_DIR. Call it before prometheus_client is imported."""
    if os.environ.get(MULTIPROC_ENV) or "prometheus_client.values" in sys.modules:
        # The operator's folder is theirs to manage. An earlier import happens only when `serve` runs
        # inside another program (a test): its metrics are per process already, and a folder would
        # only hide them. tests/test_health.py checks that `steward` itself imports no prometheus_client.
        return
    folder = tempfile.mkdtemp(prefix="steward-metrics-")
    # Set for the rest of the process: prometheus_client reads it whenever a metric gets a new label.
    os.environ[MULTIPROC_ENV] = folder
    atexit.register(_remove_folder, folder, os.getpid())


def metrics_collectors(engine: Engine, settings: Settings) -> tuple[Collector, ...]:
    """The collectors the bot's /metrics reads at each scrape, beside the process metrics."""
    # The one place for scrape-time readings of the database (outbox backlog, pending requests...):
    # only the bot serves them, so every process's /metrics does not repeat the same figures.
    from workers.clock import clock_for  # see the module docstring
    from workers.metrics import database_collector

    return (database_collector(engine, clock_for(settings)),)


def bot_wsgi_app(app: App, settings: Settings, engine: Engine) -> WSGIApp:
    """The bot's WSGI app: /slack/events, and /healthz, /readyz and /metrics checking this engine and broker."""
    from bot.app import wsgi_app  # see the module docstring
    from workers.health import process_health_app

    health = process_health_app(engine=engine, settings=settings, collectors=metrics_collectors(engine, settings))
    return wsgi_app(app, health=health)


class BotServer(BaseApplication):
    """Gunicorn embedded: the options come from `steward serve`, the app is built in each worker."""

    def __init__(self, build: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
        self._build, self._options = build, options
        super().__init__(prog="steward serve")

    def load_config(self) -> None:
        """Apply `steward serve`'s options (gunicorn's own command line and config files are not read)."""
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        """Build the WSGI app; gunicorn calls this in each worker after the fork (preload is off)."""
        return self._build()


class SharedLogs(GunicornLogger):
    """Gunicorn's own messages through Steward's logging, in its format and with its redaction."""

    def setup(self, cfg: Any) -> None:
        """Let gunicorn set levels, then hand its records to the root logger instead of its own handlers."""
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


def serve_http(settings: Settings, *, host: str, port: int, workers: int, threads: int,
               graceful_timeout: int) -> None:
    """Serve the bot over HTTP on gunicorn until SIGTERM or SIGINT, letting in-flight requests finish.

    Call `use_multiprocess_metrics()` first, so /metrics merges every worker's samples.
    """
    from bot.traffic import TRAFFIC, TrafficBoard  # no metrics: safe before the fork (module docstring)

    # Gunicorn starts a replacement before the old worker has been reaped: room for twice as many.
    board = TrafficBoard(2 * workers + 2)

    def build() -> WSGIApp:
        from steward import runtime  # see the module docstring

        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        engine = runtime.engine_for(settings)
        application = bot_wsgi_app(runtime.build_bot(settings, engine), settings, engine)
        # Everything built so far lives as long as the process: the cyclic collector need not walk it
        # again. Its full passes over those objects were the 150–250 ms tail of form submissions at 16
        # concurrent (`bench --only ack`: p99 175–264 → 76–82 ms).
        gc.freeze()
        return application

    options = {
        "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": graceful_timeout,
        "proc_name": "steward",
        "loglevel": settings.log_level.lower(),
        "logger_class": SharedLogs,
        # The control socket defaults to one path per user, which two servers on one host would share.
        "control_socket_disable": True,
        # Each worker publishes its requests in flight in a slot of the board, so the quiet lanes of all
        # of them wait for lulls of the whole server (bot/traffic.py).
        "pre_fork": lambda _arbiter, worker: setattr(worker, "traffic_slot", board.take_slot()),
        "post_fork": lambda _arbiter, worker: TRAFFIC.share(board, worker.traffic_slot),
        "child_exit": lambda arbiter, worker: _worker_exited(arbiter, worker, board),
    }
    log.info("Steward listening on http://%s:%s/slack/events (%d workers × %d threads)", host, port, workers,
             threads)
    BotServer(build, options).run()


def serve_socket_mode(app: App, settings: Settings, *, host: str, port: int,
                      engine: Engine | None = None) -> None:
    """Connect to Slack over Socket Mode; serve /healthz, /readyz and /metrics on `port` beside it."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from steward import runtime
    from workers.health import process_health_app, serve_in_background

    engine = engine or runtime.engine_for(settings)
    serve_in_background(process_health_app(engine=engine, settings=settings,
                                           collectors=metrics_collectors(engine, settings)),
                        host=host, port=port, name="bot")
    log.info("Steward connecting to Slack in Socket Mode")
    handler = counted_socket_mode_handler(SocketModeHandler)(app, settings.slack_app_token.get_secret_value())
    handler.connect()
    # Run until SIGTERM (a supervisor stopping us) or SIGINT, then say goodbye to Slack: closing the
    # socket lets Slack route new envelopes to another connection instead of retrying into a dead one.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    log.info("Steward disconnecting from Slack")
    handler.close()


def counted_socket_mode_handler(base: type) -> type:
    """Bolt's Socket Mode handler, counting each request in flight (`bot.traffic.TRAFFIC`) until its
    answer has been sent, as `bot.app.wsgi_app` does over HTTP: a form's save (on the quiet lane) then
    never reaches Slack before the ack that says "Saving…"."""
    from bot.traffic import TRAFFIC

    class CountedSocketModeHandler(base):
        def handle(self, client: Any, req: Any) -> None:
            with TRAFFIC.request():
                super().handle(client, req)
    return CountedSocketModeHandler


def _remove_folder(folder: str, owner: int) -> None:
    # Forked gunicorn workers run exit handlers too; only the process that made the folder removes it.
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def _worker_exited(arbiter: Any, worker: Any, board: Any) -> None:
    # Its requests in flight died with it, and its slot is free for a replacement.
    board.free_slot(worker.traffic_slot)
    _forget_worker_metrics(arbiter, worker)


def _forget_worker_metrics(_arbiter: Any, worker: Any) -> None:
    # A dead worker's live gauges must stop counting; its counters stay in the merged totals.
    if not os.environ.get(MULTIPROC_ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
