"""What every benchmark shares: sizes, throwaway databases, timing, ratios, and where results go."""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, insert, make_url, text

from workflows.db import make_engine
from workflows.schema import upgrade_database

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = ("tiny", "small", "full")


@dataclass(frozen=True)
class Run:
    """One invocation of `python -m bench`: the size, the databases to compare, where results go."""

    size: str = "small"
    postgres_url: str = ""
    results: Path = RESULTS
    redis_url: str = "redis://127.0.0.1:6379/12"

    @property
    def backends(self) -> tuple[str, ...]:
        """SQLite always; PostgreSQL too when a server was given."""
        return ("sqlite", "postgresql") if self.postgres_url else ("sqlite",)

    def pick(self, tiny: Any, small: Any, full: Any) -> Any:
        """The value for this run's size."""
        return {"tiny": tiny, "small": small, "full": full}[self.size]


def machine() -> dict[str, Any]:
    """The machine a figure was measured on: without it a figure means little."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "machine": platform.machine(), "load_average": os.getloadavg()}


def write_result(name: str, figures: dict[str, Any], results: Path = RESULTS) -> Path:
    """Write `<results>/<name>.json`: the figures, when and where they were measured."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    document = {"benchmark": name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(), "figures": figures}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return path


@contextmanager
def fresh_database(backend: str, run: Run, *, prefix: str) -> Iterator[Engine]:
    """An empty database migrated to head: a SQLite file in a temp dir, or a new PostgreSQL database
    created next to `run.postgres_url` (never touching that database's own rows) and dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as folder:
            engine = make_engine(f"sqlite:///{Path(folder, 'bench.db').as_posix()}")
            try:
                upgrade_database(engine)
                yield engine
            finally:
                engine.dispose()
        return
    server = make_url(make_engine(run.postgres_url).url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"steward_bench_{prefix.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        upgrade_database(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bulk_insert(engine: Engine, table: Table, rows: Iterable[dict[str, Any]], *, chunk: int = 10_000) -> float:
    """Insert rows fast (COPY on PostgreSQL, executemany in big transactions on SQLite); return seconds."""
    started = time.perf_counter()
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0.0
    rows = itertools.chain([first], rows)
    if engine.dialect.name == "postgresql":
        columns = [c.name for c in table.columns if c.name in first]
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([json.dumps(row[c]) if isinstance(row[c], dict | list) else row[c]
                                    for c in columns])
            raw.commit()
        finally:
            raw.close()
    else:
        while batch := list(itertools.islice(rows, chunk)):
            with engine.begin() as conn:
                conn.execute(insert(table), batch)
    return time.perf_counter() - started


def database_url(engine: Engine) -> str:
    """The engine's URL with its password, for a child process."""
    return engine.url.render_as_string(hide_password=False)


def timings(action: Callable[[], Any], repeat: int) -> list[float]:
    """Seconds each of `repeat` calls of `action` took."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def percentile(samples: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of samples."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def figure(name: str, value_s: float, floor_s: float | None = None, goal: str = "") -> dict[str, Any]:
    """One row of the summary: a measured time, the floor under it, their ratio and the goal."""
    row: dict[str, Any] = {"figure": name, "ms": round(value_s * 1000, 3), "goal": goal}
    if floor_s:
        row |= {"floor_ms": round(floor_s * 1000, 3), "ratio": round(value_s / floor_s, 2)}
    return row


def median(samples: Sequence[float]) -> float:
    """The median of samples."""
    return statistics.median(samples)
