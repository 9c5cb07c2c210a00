"""Health, readiness and metrics endpoints (workers/health.py), the bot's routing to them, the scheduler's
leadership note, and `steward probe` as a container health check runs it."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from click.testing import CliRunner
from prometheus_client.core import GaugeMetricFamily
from slack_bolt import App
from sqlalchemy import Engine

from bot.app import wsgi_app
from steward.cli import main
from tests.test_cli import assert_one_line_error
from workers.celery_app import filesystem_transport_options
from workers.health import check_broker, check_database, health_app, process_health_app
from workers.scheduler import LEASE_NAME, holds_lease
from workflows.db import make_engine, transaction
from workflows.locks import acquire_lease
from workflows.settings import Settings

DB_PASSWORD = "db-pa55word"
BROKER_PASSWORD = "broker-pa55word"


def call(app: Callable, path: str, *, method: str = "GET") -> tuple[str, dict[str, str], str]:
    """Ask a WSGI app for `path` (no body): status line, headers and body text."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body.decode()


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung database or broker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def file_broker(tmp_path: Path) -> Settings:
    """Settings for the embedded file broker, its folders created as the worker creates them."""
    settings = Settings(steward_home=tmp_path / "home", broker_url="")
    filesystem_transport_options(settings.broker_folder)
    return settings


# ---- the checks ----------------------------------------------------------------------------------


def test_a_database_that_answers_is_ready(engine: Engine):
    assert check_database(engine) is None


def test_a_closed_database_port_is_named_without_the_password():
    engine = make_engine(f"postgresql://steward:{DB_PASSWORD}@127.0.0.1:{closed_port()}/steward")
    try:
        reason = check_database(engine, timeout=5)
    finally:
        engine.dispose()
    assert reason is not None and reason.startswith("database: ") and "\n" not in reason
    assert "refused" in reason.lower() and DB_PASSWORD not in reason


def test_a_database_that_never_answers_is_reported_within_the_timeout(silent_port: int):
    engine = make_engine(f"postgresql://steward@127.0.0.1:{silent_port}/steward")
    try:
        assert check_database(engine, timeout=0.3) == "database: no answer within 0.3s"
    finally:
        engine.dispose()


def test_redis_that_answers_is_ready(redis_url: str):
    assert check_broker(Settings(broker_url=redis_url)) is None


def test_redis_on_a_closed_port_is_named_without_the_password():
    url = f"redis://:{BROKER_PASSWORD}@127.0.0.1:{closed_port()}/0"
    reason = check_broker(Settings(broker_url=url), timeout=5)
    assert reason is not None and reason.startswith("broker: ") and "\n" not in reason
    assert "refused" in reason.lower() and BROKER_PASSWORD not in reason


def test_redis_that_never_answers_is_reported_within_the_timeout(silent_port: int):
    reason = check_broker(Settings(broker_url=f"redis://127.0.0.1:{silent_port}/0"), timeout=0.3)
    assert reason == "broker: no answer within 0.3s"


def test_the_file_broker_is_ready_when_its_folders_exist(file_broker: Settings):
    assert check_broker(file_broker) is None


def test_a_missing_file_broker_folder_is_named(file_broker: Settings):
    (file_broker.broker_folder / "processed").rmdir()
    assert check_broker(file_broker) == f"broker: folder {file_broker.broker_folder / 'processed'} is missing"


# ---- the endpoints -------------------------------------------------------------------------------


def test_healthz_answers_while_the_process_runs_whatever_readyz_says():
    app = health_app(readiness=lambda: ["database: down"])
    assert call(app, "/healthz")[::2] == ("200 OK", "ok\n")


def test_readyz_is_200_when_the_database_and_the_broker_answer(sqlite_engine: Engine, file_broker: Settings):
    status, headers, body = call(process_health_app(engine=sqlite_engine, settings=file_broker), "/readyz")
    assert (status, body) == ("200 OK", "ready\n")
    assert headers["Content-Type"].startswith("text/plain")


def test_readyz_is_503_with_one_line_per_failure_and_no_secrets():
    engine = make_engine(f"postgresql://steward:{DB_PASSWORD}@127.0.0.1:{closed_port()}/steward")
    settings = Settings(broker_url=f"redis://:{BROKER_PASSWORD}@127.0.0.1:{closed_port()}/0")
    try:
        status, _, body = call(process_health_app(engine=engine, settings=settings, timeout=5), "/readyz")
    finally:
        engine.dispose()
    assert status == "503 Service Unavailable"
    lines = body.splitlines()
    assert [line.split(":")[0] for line in lines] == ["database", "broker"], body
    assert DB_PASSWORD not in body and BROKER_PASSWORD not in body and "://" not in body


def test_notes_follow_a_ready_answer_and_are_not_asked_for_when_a_check_failed():
    asked = []

    def leader() -> list[str]:
        asked.append(True)
        return ["leader: no (standby)"]

    assert call(health_app(notes=leader), "/readyz")[::2] == ("200 OK", "ready\nleader: no (standby)\n")
    status, _, body = call(health_app(readiness=lambda: ["database: down"], notes=leader), "/readyz")
    assert (status, body) == ("503 Service Unavailable", "database: down\n")
    assert len(asked) == 1


class _Readings:
    """A scrape-time collector, as the bot passes for figures read from the database."""

    def collect(self):
        """One gauge."""
        yield GaugeMetricFamily("steward_test_backlog", "A reading taken at scrape time.", value=7)


def test_metrics_serve_the_prometheus_text_with_the_collectors_given():
    status, headers, body = call(health_app(collectors=(_Readings(),)), "/metrics")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/plain; version=")
    assert "steward_test_backlog 7.0" in body
    assert "# TYPE steward_" in body.replace("steward_test_backlog", "")  # the process's own metrics too


def test_other_paths_are_not_found():
    assert call(health_app(), "/slack/events")[0] == "404 Not Found"


def test_the_bot_routes_health_paths_to_its_health_app_and_slack_to_bolt():
    bolt = App(token="xoxb-test", signing_secret="secret", token_verification_enabled=False)
    app = wsgi_app(bolt, health=health_app(readiness=lambda: ["database: down"]))
    assert call(app, "/healthz")[0] == "200 OK"
    assert call(app, "/readyz")[::2] == ("503 Service Unavailable", "database: down\n")
    assert call(app, "/metrics")[1]["Content-Type"].startswith("text/plain; version=")
    assert call(app, "/slack/events", method="POST")[0].startswith("401")  # unsigned: Bolt refuses it
    assert call(app, "/elsewhere")[0] == "404 Not Found"


# ---- the scheduler's leadership, as its /readyz reports it ----------------------------------------


def test_holds_lease_is_true_only_for_the_holder_and_only_until_it_expires(engine: Engine, now):
    with transaction(engine) as session:
        assert acquire_lease(session=session, name=LEASE_NAME, holder="host:1", now=now, ttl=timedelta(minutes=3))
    assert holds_lease(engine=engine, holder="host:1", now=now)
    assert not holds_lease(engine=engine, holder="host:2", now=now)
    assert not holds_lease(engine=engine, holder="host:1", now=now + timedelta(minutes=3))


# ---- multiprocess metrics ------------------------------------------------------------------------


def test_the_command_line_imports_no_prometheus_client_before_serve_chooses_its_mode():
    # prometheus_client fixes its mode on import: were `steward` to import it first, gunicorn's
    # workers would keep their metrics to themselves and /metrics would show one worker's share.
    code = "import sys, steward.cli; print(sorted(m for m in sys.modules if m.startswith('prometheus')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_multiprocess_metrics_use_a_private_folder_removed_when_the_process_exits(tmp_path: Path):
    code = ("import os, steward.server as s\n"
            "s.use_multiprocess_metrics()\n"
            "from prometheus_client import values\n"
            "folder = os.environ[s.MULTIPROC_ENV]\n"
            "print(folder, os.path.isdir(folder), values.ValueClass is not values.MutexValue)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                            env=env)
    folder, exists, multiprocess = result.stdout.split()
    assert Path(folder).parent == tmp_path and Path(folder).name.startswith("steward-metrics-")
    assert (exists, multiprocess) == ("True", "True")
    assert not Path(folder).exists()


# ---- health ports --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_a_health_port_in_use_is_a_one_line_error(command: str, cli_engine: Engine, silent_port: int):
    result = CliRunner().invoke(main, [command, "--health-host", "127.0.0.1", "--health-port", str(silent_port)])
    assert_one_line_error(result, f"cannot serve health checks on 127.0.0.1:{silent_port}", "--health-port")


# ---- steward probe -------------------------------------------------------------------------------


class _Answers(BaseHTTPRequestHandler):
    """/ok answers 200; /readyz answers 503 with two reasons; /slow never answers in time."""

    def do_GET(self) -> None:
        """Answer as the path says."""
        if self.path == "/slow":
            self.server.release.wait(10)  # type: ignore[attr-defined]
        status, body = {"/ok": (200, b"ready\n"),
                        "/readyz": (503, b"database: OperationalError: refused\nbroker: down\n")}.get(
                            self.path, (404, b"not found\n"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def answers() -> Iterator[str]:
    """A tiny local HTTP server; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


def probe(*args: str):
    """Run `steward probe <args>` in-process."""
    return CliRunner().invoke(main, ["probe", *args])


def test_probe_exits_0_on_a_2xx_answer(answers: str):
    result = probe(f"{answers}/ok")
    assert result.exit_code == 0 and result.output == ""


def test_probe_says_what_a_503_said_in_one_line(answers: str):
    result = probe(f"{answers}/readyz")
    assert result.exit_code == 1
    assert result.output == (f"probe: {answers}/readyz answered 503: database: OperationalError: refused; "
                             "broker: down\n")


def test_probe_of_a_closed_port_cannot_connect():
    url = f"http://127.0.0.1:{closed_port()}/readyz"
    result = probe(url)
    assert (result.exit_code, result.output) == (1, f"probe: cannot connect to {url}\n")


def test_probe_gives_up_after_its_timeout(answers: str):
    result = probe(f"{answers}/slow", "--timeout", "0.2")
    assert (result.exit_code, result.output) == (1, f"probe: {answers}/slow did not answer within 0.2s\n")


def test_probe_never_prints_a_password_in_the_url():
    url = f"http://user:hunter2@127.0.0.1:{closed_port()}/readyz"
    result = probe(url)
    assert result.exit_code == 1 and "hunter2" not in result.output and "user:***@" in result.output
