"""What the chaos suite shares: a TCP proxy in front of the test's PostgreSQL database, and its figures,
printed at the end of the run and written to the "chaos" key of bench/results/reliability.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bench.common import RESULTS, machine
from tests.chaos.proxy import TcpProxy

# The whole-stack fixtures of tests/e2e, shared rather than copied.
from tests.e2e.conftest import e2e_broker, make_stack, own_redis  # noqa: F401

RELIABILITY = RESULTS / "reliability.json"
KEY = "chaos"
# Summary lines of this session's chaos runs, printed by pytest_terminal_summary.
SUMMARY: list[str] = []


@pytest.fixture
def pg_proxy(fresh_postgres_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test's fresh database, and the DATABASE_URL that goes through it."""
    url = make_url(fresh_postgres_url)
    proxy = TcpProxy(url.port or 5432, upstream_host=url.host or "127.0.0.1").start()
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.stop()


def report(line: str, figures: dict[str, Any]) -> None:
    """Print `line` at the end of the run, and store `figures` under "chaos" in reliability.json, keeping
    what other suites wrote there."""
    SUMMARY.append(line)
    document = json.loads(RELIABILITY.read_text(encoding="utf-8")) if RELIABILITY.exists() else {}
    document[KEY] = {"summary": line, **figures, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "machine": machine()}
    RELIABILITY.parent.mkdir(parents=True, exist_ok=True)
    RELIABILITY.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the chaos figures in the run's output, with or without -s (CI logs keep them)."""
    if SUMMARY:
        terminalreporter.section("chaos")
        for line in SUMMARY:
            terminalreporter.write_line(line)
