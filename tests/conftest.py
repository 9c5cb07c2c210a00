"""Shared fixtures: real databases (SQLite always, PostgreSQL too), the policy and a fixed clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from workflows.db import make_engine
from workflows.policy import Policy, load_policy
from workflows.schema import create_schema, truncate_all

POSTGRES_URL = os.environ.get("STEWARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("STEWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"
FIXED_NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
STEWARD_VARIABLES = (
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL", "DATABASE_URL",
    "BROKER_URL", "STEWARD_HOME", "STEWARD_POLICY", "LOG_LEVEL",
)


def service_missing(what: str, reason: str) -> None:
    """Skip loudly on a developer machine; fail in CI, where every service must be up."""
    message = f"*** {what} is not reachable ({reason}); tests that need it cannot run ***"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _admin_engine() -> Engine:
    """An autocommit connection to the server's maintenance database, or a loud skip (a failure in CI)."""
    admin_url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no PostgreSQL here"
        service_missing("PostgreSQL", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return admin


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, and drop it afterwards."""
    admin = _admin_engine()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test run (shared by the service tests), dropped afterwards."""
    with throwaway_database("steward_test") as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database of the test's own (for migrations and whole-process tests)."""
    with throwaway_database("steward_fresh") as url:
        yield url


@pytest.fixture(scope="session")
def _pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(_pg_engine: Engine) -> Iterator[Engine]:
    """The PostgreSQL engine, emptied after each test."""
    yield _pg_engine
    truncate_all(_pg_engine)


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:
    """A SQLite file database with the schema applied."""
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request) -> Engine:
    """Each service test runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_engine")


@pytest.fixture
def redis_url() -> str:
    """The test Redis, or a loud skip (a failure in CI)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def policy() -> Policy:
    """The shipped default policy."""
    return load_policy(None)


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware clock reading."""
    return FIXED_NOW


@pytest.fixture
def cli_home(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Path:
    """For command-line tests: an empty working directory, STEWARD_HOME under it, no other Steward variable."""
    for name in STEWARD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEWARD_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def cli_engine(cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """For command-line tests: a migrated SQLite file that DATABASE_URL points at."""
    url = f"sqlite:///{(cli_home / 'cli.db').as_posix()}"
    monkeypatch.setenv("DATABASE_URL", url)
    engine = make_engine(url)
    create_schema(engine)
    yield engine
    engine.dispose()
