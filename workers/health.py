"""Health, readiness and metrics for every Steward process: the checks, and one small WSGI app serving them.

`/healthz` says the process is alive, `/readyz` says it can do its work (the database and the broker
answer; 503 with one line per failed check otherwise), and `/metrics` serves the Prometheus metrics.
The bot mounts this app beside /slack/events; the worker and the scheduler serve it on a port of their
own (`serve_in_background`), so container health checks ask every process the same questions.
Reasons name what failed and why, never a URL, password or token.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlsplit

from kombu import Connection
from sqlalchemy import Engine, text

from workers.metrics import render_metrics
from workflows.errors import DomainError
from workflows.settings import Settings

HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
METRICS_PATH = "/metrics"
PATHS = (HEALTHZ_PATH, READYZ_PATH, METRICS_PATH)
DEFAULT_TIMEOUT = 3.0

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]


class HealthPortUnavailable(DomainError):
    """The health port cannot be listened on (in use, or not allowed)."""


def check_database(engine: Engine, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """None when the database answers `SELECT 1` within `timeout` seconds, else a one-line reason."""
    def select_one() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return _bounded("database", select_one, timeout=timeout, secrets=_url_secrets(engine.url.password))


def check_broker(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """None when the broker answers within `timeout` seconds (the file broker: its folders are writable)."""
    url = settings.resolved_broker_url
    if url.startswith("filesystem://"):
        return _check_broker_folders(settings)

    def connect() -> None:
        # Redis reads time out too (past the bound below, so the reason stays "no answer"): without it
        # a check against a hung server would hold its thread forever, one more at every probe.
        options = {"socket_timeout": 2 * timeout, "socket_connect_timeout": timeout}
        with Connection(url, connect_timeout=timeout, transport_options=options) as connection:
            # One attempt, no back-off: a health check reports the outage, the worker rides it out.
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)

    return _bounded("broker", connect, timeout=timeout, secrets=_url_secrets(urlsplit(url).password))


def readiness_problems(engine: Engine, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The reasons this process is not ready (database, then broker); empty when both answer."""
    # Both at once, so a hung database and a hung broker cost one timeout, not two.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz") as pool:
        database = pool.submit(check_database, engine, timeout=timeout)
        broker = pool.submit(check_broker, settings, timeout=timeout)
        return [reason for reason in (database.result(), broker.result()) if reason]


def health_app(*, readiness: Callable[[], list[str]] | None = None,
               notes: Callable[[], list[str]] | None = None,
               collectors: tuple[Any, ...] = ()) -> WSGIApp:
    """A WSGI app for /healthz, /readyz (200, or 503 with `readiness()`'s reasons) and /metrics.

    `notes` adds informational lines to a ready /readyz (the scheduler's leadership); they are not asked
    for when a check failed, since they may need what failed. `collectors` are extra Prometheus
    collectors read at each scrape of /metrics.
    """
    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTHZ_PATH:
            return _plain(start_response, "200 OK", ["ok"])
        if path == READYZ_PATH:
            problems = readiness() if readiness else []
            if problems:
                return _plain(start_response, "503 Service Unavailable", problems)
            return _plain(start_response, "200 OK", ["ready", *(notes() if notes else [])])
        if path == METRICS_PATH:
            body, content_type = render_metrics(collectors=collectors)
            start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]
        return _plain(start_response, "404 Not Found", ["not found"])

    return application


def process_health_app(*, engine: Engine, settings: Settings, notes: Callable[[], list[str]] | None = None,
                       collectors: tuple[Any, ...] = (), timeout: float = DEFAULT_TIMEOUT) -> WSGIApp:
    """The health app of a Steward process: ready when its database and broker answer."""
    return health_app(readiness=lambda: readiness_problems(engine, settings, timeout=timeout), notes=notes,
                      collectors=collectors)


def serve_in_background(app: WSGIApp, *, host: str, port: int, name: str) -> threading.Thread:
    """Serve `app` on host:port from a daemon thread (the worker's and scheduler's health ports)."""
    from waitress.server import create_server  # only processes with a health port need it

    # Created here, not in the thread, so a port already in use fails the command at start-up.
    try:
        server = create_server(app, host=host, port=port, threads=2, ident=f"steward-{name}")
    except OSError as exc:
        raise HealthPortUnavailable(f"cannot serve health checks on {host}:{port}: {exc.strerror or exc} "
                                    "(choose another --health-port, or 0 for none)") from None
    thread = threading.Thread(target=server.run, daemon=True, name=f"{name}-health")
    thread.start()
    log.info("%s health on http://%s:%s%s", name, host, port, READYZ_PATH)
    return thread


def _plain(start_response: Callable, status: str, lines: list[str]) -> list[bytes]:
    body = ("\n".join(lines) + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


def _check_broker_folders(settings: Settings) -> str | None:
    folder = settings.broker_folder
    for path in (folder, folder / "processed", folder / "control"):
        if not path.is_dir():
            return f"broker: folder {path} is missing"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"broker: folder {path} is not writable"
    return None


def _bounded(what: str, probe: Callable[[], None], *, timeout: float, secrets: tuple[str, ...]) -> str | None:
    # A daemon thread, so a check stuck in a driver's connect never holds up the answer past `timeout`.
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            probe()
            outcome["error"] = None
        except Exception as exc:  # noqa: BLE001 - every failure is a reason to report, not to raise
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name=f"check-{what}")
    thread.start()
    thread.join(timeout)
    if "error" not in outcome:
        return f"{what}: no answer within {timeout:g}s"
    error = outcome["error"]
    return None if error is None else f"{what}: {_describe(error, secrets)}"


def _describe(error: BaseException, secrets: tuple[str, ...]) -> str:
    original = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    lines = str(original).strip().splitlines()
    message = " ".join(lines[0].split()) if lines else ""  # drivers pad with runs of spaces
    for secret in secrets:
        message = message.replace(secret, "***")
    return f"{type(original).__name__}: {message}" if message else type(original).__name__


def _url_secrets(password: str | None) -> tuple[str, ...]:
    # The password as written in a URL and decoded, so neither form can leak into a reason.
    if not password:
        return ()
    return tuple({password, unquote(password)})
