"""On SQLite, readers neither wait for writers nor hold them up, and writers take turns (workflows/db.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from workflows.db import make_engine, read_transaction, transaction


def sqlite_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    with transaction(engine) as session:
        session.exec(text("CREATE TABLE counter (n INTEGER)"))
        session.exec(text("INSERT INTO counter VALUES (0)"))
    return engine


def test_a_read_does_not_wait_for_a_writer(tmp_path):
    engine = sqlite_engine(tmp_path)
    writing, done = threading.Event(), threading.Event()

    def write() -> None:
        with transaction(engine) as session:
            session.exec(text("UPDATE counter SET n = 1"))
            writing.set()
            done.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert writing.wait(10)
        started = time.perf_counter()
        with read_transaction(engine) as session:
            assert session.exec(text("SELECT n FROM counter")).one() == (0,), "the snapshot before the write"
        assert time.perf_counter() - started < 1
    finally:
        done.set()
        writer.join()
    with read_transaction(engine) as session:
        assert session.exec(text("SELECT n FROM counter")).one() == (1,)
    engine.dispose()


def test_writers_take_turns_without_losing_an_update(tmp_path):
    engine = sqlite_engine(tmp_path)

    def increment(_: int) -> None:
        with transaction(engine) as session:
            (n,) = session.exec(text("SELECT n FROM counter")).one()
            session.exec(text("UPDATE counter SET n = :n"), params={"n": n + 1})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(increment, range(200)))

    with read_transaction(engine) as session:
        assert session.exec(text("SELECT n FROM counter")).one() == (200,)
    engine.dispose()
