"""Peak memory and time of `steward export decisions --format jsonl` as the decision log grows.

Fills a database with a valid hash chain of synthetic decision-log entries (fast: hashes computed in a
loop, rows inserted with executemany, or COPY on PostgreSQL, never through append_entry), then runs
the real command in a child process with its output going to /dev/null, and reads that child's peak
RSS (its VmHWM, polled from /proc) and time. It measures an empty log first, then a tenth of --entries,
then --entries, so you can see whether memory stays flat as the log grows ten times. Prints figures;
never passes or fails.

    .venv/bin/python bench/export_memory.py [--entries 1000000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert, select

from workflows.audit import GENESIS_HASH, canonical_json
from workflows.db import make_engine
from workflows.models import DecisionLogEntry
from workflows.schema import upgrade_database

LOG = DecisionLogEntry.__table__
COLUMNS = ("seq", "at", "actor", "action", "subject_type", "subject_id", "subject_slug", "before", "after",
           "prev_hash", "hash")
CHUNK = 10_000
START = datetime(2025, 1, 1, tzinfo=UTC)
ACTIONS = (
    ("asset.registered", "asset"), ("access.requested", "access_request"), ("access.approved_step", "access_request"),
    ("access.approved", "access_request"), ("access.granted", "grant"), ("grant.expiry_warned", "grant"),
    ("grant.expired", "grant"),
)


def entries(first_seq: int, last_seq: int, prev_hash: str) -> Iterator[dict[str, Any]]:
    """Synthetic entries first_seq..last_seq, each hashed exactly as workflows.audit hashes a real one."""
    for seq in range(first_seq, last_seq + 1):
        action, subject_type = ACTIONS[seq % len(ACTIONS)]
        at = START + timedelta(seconds=seq)
        after = {"request": seq // 7, "grantee": f"U{seq % 997:07d}", "level": "read",
                 "expires_at": (at + timedelta(days=1)).isoformat(), "note": "synthetic entry for the benchmark"}
        before = {"status": "pending"} if subject_type == "access_request" else None
        body = {"seq": seq, "at": at.isoformat(timespec="microseconds"), "actor": f"U{seq % 89:07d}",
                "action": action, "subject_type": subject_type, "subject_id": seq // 7,
                "subject_slug": f"asset-{seq % 500}", "before": before, "after": after}
        digest = hashlib.sha256((prev_hash + canonical_json(body)).encode("utf-8")).hexdigest()
        yield {**body, "at": at, "prev_hash": prev_hash, "hash": digest}
        prev_hash = digest


def fill_to(engine: Engine, target: int) -> float:
    """Append entries until the log has `target` of them; return the seconds it took."""
    started = time.perf_counter()
    with engine.begin() as conn:
        head = conn.execute(select(LOG.c.seq, LOG.c.hash).order_by(LOG.c.seq.desc()).limit(1)).first()
    first = (head.seq + 1) if head else 1
    rows = entries(first, target, head.hash if head else GENESIS_HASH)
    if engine.dialect.name == "postgresql":
        _copy(engine, rows)
    else:
        while chunk := [row for _, row in zip(range(CHUNK), rows, strict=False)]:
            with engine.begin() as conn:
                conn.execute(insert(LOG), chunk)
    return time.perf_counter() - started


def _copy(engine: Engine, rows: Iterator[dict[str, Any]]) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor, cursor.copy(f"COPY decision_log ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(row[c]) if c in ("before", "after") and row[c] is not None else row[c]
                                for c in COLUMNS])
        raw.commit()
    finally:
        raw.close()


def measure_steward(command: list[str], database_url: str, *, module: bool = True) -> tuple[str, float, float, float]:
    """Run `steward <command>` (or, with module=False, `python <command>`) in a child process; return (its
    first output line, peak RSS in MiB, wall seconds, CPU seconds). Output goes to a temporary file, so a
    large export costs no memory here."""
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *(["-m", "steward"] if module else []), *command], stdout=out,
                                 stderr=err, env=env, cwd=ROOT)
        peak = _watch_peak(child)
        # wait4, not wait: it also returns the child's resource usage (CPU time here).
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if returncode != 0:
            raise SystemExit(f"steward {' '.join(command)} failed ({returncode}): {err.read().decode().strip()}")
        first = out.readline().decode().rstrip("\n")
    return first, peak / 1024, wall, usage.ru_utime + usage.ru_stime


def _watch_peak(child: subprocess.Popen) -> int:
    """The child's peak RSS in KiB, polled from /proc until it exits (without reaping it). Not wait4's
    ru_maxrss: Linux carries that across exec from the forked copy of this (large) process."""
    peak, status = 0, Path(f"/proc/{child.pid}/status")
    while True:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):  # the high-water mark of this image since exec
                    peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return peak
        # A zombie has no memory left to read, and the last reading stands.
        if os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return peak
        time.sleep(0.02)


def run_export(database_url: str) -> tuple[float, float, float]:
    """Run the export in a child process; return (peak RSS in MiB, wall seconds, CPU seconds)."""
    _, rss, wall, cpu = measure_steward(["export", "decisions", "--format", "jsonl"], database_url)
    return rss, wall, cpu


def size_arguments(description: str) -> tuple[argparse.Namespace, list[int]]:
    """The benchmarks' shared flags, and the two log sizes to measure (a tenth of --entries, and --entries)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--entries", type=int, default=1_000_000, help="the larger log size (default 1,000,000)")
    parser.add_argument("--database-url", default="",
                        help="a throwaway PostgreSQL database (entries are appended); default: SQLite in a temp dir")
    args = parser.parse_args()
    return args, sorted({max(1, args.entries // 10), args.entries})


@contextmanager
def bench_database(database_url: str, *, prefix: str) -> Iterator[tuple[str, Engine]]:
    """The given database, or a SQLite file in a temporary folder, migrated to head."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        url = database_url or f"sqlite:///{Path(folder, 'bench.db').as_posix()}"
        engine = make_engine(url)
        upgrade_database(engine)
        try:
            yield url, engine
        finally:
            engine.dispose()


def main() -> None:
    """Fill, export, print."""
    args, sizes = size_arguments(__doc__.splitlines()[0])
    with bench_database(args.database_url, prefix="steward-export-bench-") as (url, engine):
        print(f"database: {engine.dialect.name}; command: steward export decisions --format jsonl > /dev/null")
        print(f"{'entries':>10}  {'fill s':>8}  {'export s':>9}  {'cpu s':>7}  {'rows/s':>9}  {'peak RSS MiB':>12}")
        rss, wall, cpu = run_export(url)
        print(f"{'0':>10}  {'-':>8}  {wall:9.2f}  {cpu:7.2f}  {'-':>9}  {rss:12.1f}")
        baseline = rss
        for size in sizes:
            filled = fill_to(engine, size)
            with engine.connect() as conn:
                count = conn.execute(select(LOG.c.seq).order_by(LOG.c.seq.desc()).limit(1)).scalar_one()
            rss, wall, cpu = run_export(url)
            print(f"{count:>10,}  {filled:8.1f}  {wall:9.2f}  {cpu:7.2f}  {count / wall:9,.0f}  {rss:12.1f}")
        print(f"peak RSS above the empty-log baseline at {sizes[-1]:,} entries: {rss - baseline:.1f} MiB")
        engine.dispose()


if __name__ == "__main__":
    main()
