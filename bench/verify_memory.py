"""Peak memory and time of `steward audit verify --anchors` as the decision log grows.

Fills a database with a valid hash chain of synthetic entries (bench/export_memory.py's fill: hashes
computed in a loop, rows inserted in bulk), then runs the real command in a child process and reads
that child's peak RSS (VmHWM, polled from /proc) and time: for an empty log, a tenth of --entries, and --entries.
Flat means the last two peaks are about the same: verify reads in keyset batches of 5,000 rows, one
short transaction each. Prints figures; never passes or fails.

    .venv/bin/python bench/verify_memory.py [--entries 1000000] [--database-url postgresql://...]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import select

from bench.export_memory import LOG, bench_database, fill_to, measure_steward, size_arguments


def run_verify(database_url: str) -> tuple[str, float, float, float]:
    """Run verify in a child process; return (its first line, peak RSS in MiB, wall s, CPU s)."""
    return measure_steward(["audit", "verify", "--anchors"], database_url)


def main() -> None:
    """Fill, verify, print."""
    args, sizes = size_arguments(__doc__.splitlines()[0])
    with bench_database(args.database_url, prefix="steward-verify-bench-") as (url, engine):
        print(f"database: {engine.dialect.name}; command: steward audit verify --anchors")
        print(f"{'entries':>10}  {'fill s':>8}  {'verify s':>9}  {'cpu s':>7}  {'rows/s':>9}  {'peak RSS MiB':>12}")
        line, rss, wall, cpu = run_verify(url)
        print(f"{'0':>10}  {'-':>8}  {wall:9.2f}  {cpu:7.2f}  {'-':>9}  {rss:12.1f}")
        baseline = rss
        for size in sizes:
            filled = fill_to(engine, size)
            with engine.connect() as conn:
                count = conn.execute(select(LOG.c.seq).order_by(LOG.c.seq.desc()).limit(1)).scalar_one()
            line, rss, wall, cpu = run_verify(url)
            print(f"{count:>10,}  {filled:8.1f}  {wall:9.2f}  {cpu:7.2f}  {count / wall:9,.0f}  {rss:12.1f}")
        print(f"last verify said: {line}")
        print(f"peak RSS above the empty-log baseline at {sizes[-1]:,} entries: {rss - baseline:.1f} MiB")
        engine.dispose()


if __name__ == "__main__":
    main()
