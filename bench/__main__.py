"""One command for every benchmark: `python -m bench [--size tiny|small|full] [--only NAME ...]`.

Runs each benchmark in turn, each printing its own figures and writing `<results>/<name>.json`, then
prints one summary table: every figure beside the floor measured under it in the same run, and their
ratio. Benchmarks never pass or fail on time; a benchmark that crashes is reported and the exit
status is non-zero, so CI can run `--size tiny` as a smoke test.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.common import RESULTS, SIZES, Run, machine, write_result

# Name → module; each module has run(Run) -> figures, with figures["rows"] made by common.figure().
BENCHMARKS = {"ack": "bench.ack_overhead", "search": "bench.search", "sweep": "bench.sweep",
              "evidence": "bench.evidence", "decisions": "bench.decisions"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="small",
                        help="tiny: a smoke test in seconds; small: minutes; full: the enterprise scale of issue 8")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL server URL: benchmarks that support it also run there, each in a new "
                             "database they create and drop (SQLite in a temp dir always runs)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12",
                        help="a Redis database the decisions benchmark may empty (default: db 12 on localhost)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where JSON goes (default {RESULTS})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, print the summary; 1 if any crashed."""
    args = parse_args(argv)
    run = Run(size=args.size, postgres_url=args.database_url, results=args.results, redis_url=args.redis_url)
    host = machine()
    print(f"bench --size {run.size} on {host['cpus']} CPUs, {host['platform']}, Python {host['python']}, "
          f"load average {', '.join(f'{x:.2f}' for x in host['load_average'])}; databases: {', '.join(run.backends)}")
    rows: list[tuple[str, dict]] = []
    failed: list[str] = []
    for name in args.only or list(BENCHMARKS):
        print(f"\n== {name} ==")
        started = time.perf_counter()
        try:
            figures = importlib.import_module(BENCHMARKS[name]).run(run)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            continue
        figures["size"], figures["seconds"] = run.size, round(time.perf_counter() - started, 1)
        print(f"wrote {write_result(name, figures, run.results)}")
        rows += [(name, row) for row in figures.get("rows", [])]
    print_summary(rows)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def print_summary(rows: list[tuple[str, dict]]) -> None:
    """The table of figures, floors and ratios."""
    print(f"\n{'benchmark':<10} {'figure':<34} {'value':>11} {'floor':>10} {'ratio':>8}  goal")
    for name, row in rows:
        value = f"{row['ms']:.2f} ms" if "ms" in row else str(row.get("value", ""))
        floor = f"{row['floor_ms']:.2f} ms" if "floor_ms" in row else "-"
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
        print(f"{name:<10} {row['figure']:<34} {value:>11} {floor:>10} {ratio:>8}  {row.get('goal', '')}")


if __name__ == "__main__":
    sys.exit(main())
