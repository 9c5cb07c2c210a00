"""Engines and sessions: SQLite for the embedded setup, PostgreSQL in production."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: writers of different processes meet in SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, Table, create_engine, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from workflows.errors import DomainError


class DatabaseUnavailable(DomainError):
    """The database cannot be reached."""


_UPSERT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
READ_ONLY = "steward_read_only"  # execution option marking read_transaction's connection
WRITER_WAIT_SECONDS = 30  # as long as SQLite's busy_timeout below; then SQLite decides


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


def insert_ignoring_duplicates(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert these rows in one executemany, skipping any whose key is taken."""
    upsert = _UPSERT_INSERTS.get(session.get_bind().dialect.name)
    if upsert is None:
        for values in rows:
            insert_if_absent(session, table, values)
    elif rows:
        # A list of parameter sets: one statement compiled once and sent in batches by the driver, where
        # a multi-row VALUES of the same rows took 20 times as long to build.
        session.execute(upsert(table).on_conflict_do_nothing(), rows)


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
        # a uniqueness check) must not interleave with another writer's. A read-only one begins
        # deferred: in WAL mode it reads a snapshot, neither waiting for writers nor holding them up.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    _WRITERS[engine] = _WriterQueue(path if path and path != ":memory:" else None)
    return engine


class _WriterQueue:
    """The SQLite writers of one database file, one at a time: threads queue on a lock, processes on a lock file.

    SQLite's busy handler retries with sleeps growing to 100 ms, so with many writers waiting (a burst of
    modal submissions, each writing before its ack) the last ones waited seconds after the lock was free.
    """

    def __init__(self, path: str | None) -> None:
        self._lock, self._path = threading.Lock(), f"{path}.writers" if path and fcntl else None
        self._fd, self._pid = -1, 0
        self._holder = threading.local()

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold this writer's turn; after WRITER_WAIT_SECONDS go ahead anyway and let SQLite decide."""
        if getattr(self._holder, "busy", False):
            # A transaction opened inside another on this thread: waiting for our own turn could only time
            # out, so leave it to SQLite (whose busy handler has always refereed that case).
            yield
            return
        self._holder.busy = True
        try:
            with self._queued():
                yield
        finally:
            self._holder.busy = False

    @contextmanager
    def _queued(self) -> Iterator[None]:
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        if not self._lock.acquire(timeout=WRITER_WAIT_SECONDS):
            yield
            return
        try:
            fd = self._file()
            locked = fd >= 0 and _flock(fd, deadline)
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _file(self) -> int:
        # Opened once per process: a descriptor inherited across a fork would share its flock.
        if self._path is not None and self._pid != os.getpid():
            try:
                self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            except OSError:  # a read-only folder: SQLite's busy handler still keeps writers apart
                self._path = None
        return self._fd if self._path is not None else -1


def _flock(fd: int, deadline: float) -> bool:
    # Another process holds the turn for one short transaction: poll finely (at most 5 ms late) until the
    # deadline rather than block without one, so a stuck holder still ends in SQLite's "database is locked".
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.005)


_WRITERS: weakref.WeakKeyDictionary[Engine, _WriterQueue] = weakref.WeakKeyDictionary()  # per SQLite engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    writers = _WRITERS.get(engine)
    with writers.turn() if writers is not None else nullcontext(), _unit(engine) as session:
        yield session


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Session]:
    """A unit of work that only reads: on SQLite it neither queues behind writers nor holds them up."""
    with _unit(engine, read_only=True) as session:
        yield session


@contextmanager
def _unit(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            if read_only:
                session.connection(execution_options={READ_ONLY: True})  # seen by _on_begin on SQLite
            yield session
    except OperationalError as exc:
        if _is_connection_error(exc):
            raise DatabaseUnavailable("The database cannot be reached. Try again in a minute.") from exc
        raise


def _is_connection_error(exc: OperationalError) -> bool:
    return bool(getattr(exc, "connection_invalidated", False)) or "connect" in str(exc.orig).lower()
