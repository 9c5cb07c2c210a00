"""Engines and sessions: SQLite for the embedded setup, PostgreSQL in production."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from workflows.errors import DomainError


class DatabaseUnavailable(DomainError):
    """The database cannot be reached."""


_UPSERT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def insert_if_absent(session: Session, table: Table, values: dict[str, Any]) -> bool:
    """Insert one row unless its key is taken; True if this call inserted it."""
    # The key decides between racing first-comers. ON CONFLICT DO NOTHING lets the loser find out
    # without an error in the server's log; RETURNING says who won, since drivers need not report a
    # row count for an INSERT (psycopg's comes back as -1).
    dialect = session.get_bind().dialect.name
    if dialect in _UPSERT_INSERTS:
        key = next(iter(table.primary_key.columns))
        statement = _UPSERT_INSERTS[dialect](table).values(**values).on_conflict_do_nothing().returning(key)
        return session.exec(statement).first() is not None
    # Elsewhere the savepoint keeps the caller's transaction usable after the loser's error.
    try:
        with session.begin_nested():
            session.exec(insert(table).values(**values))
    except IntegrityError:
        return False
    return True


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine tuned for the backend in `url`."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        return _sqlite_engine(url, echo=echo)
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         connect_args={"connect_timeout": 5})


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    path = url.split("///", 1)[-1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Take the write lock up front: a read-then-write transaction (the hash chain's head,
        # a uniqueness check) must not interleave with another writer's.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except OperationalError as exc:
        if _is_connection_error(exc):
            raise DatabaseUnavailable("The database cannot be reached. Try again in a minute.") from exc
        raise


def _is_connection_error(exc: OperationalError) -> bool:
    return bool(getattr(exc, "connection_invalidated", False)) or "connect" in str(exc.orig).lower()
