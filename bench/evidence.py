"""Evidence at scale: `steward audit verify` and the streaming exports over a large decision log.

Fills the log with a valid hash chain in bulk (bench/export_memory.py's fill), then runs each real
command in a child process and reads its wall time and peak RSS (its VmHWM, polled from /proc) at
two sizes, ten times apart: flat memory means the two peaks are about the same. The floor is the same child process doing
the least any of them must: reading every row of the log in seq order, straight from the driver (`steward
export decisions` must also render each row; verify must also hash each, but may use every core).
"""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from bench.common import Run, database_url, figure, fresh_database
from bench.export_memory import fill_to, measure_steward

NAME = "evidence"
COMMANDS = {
    "audit verify": ["audit", "verify"],
    "export decisions jsonl": ["export", "decisions", "--format", "jsonl"],
    "export decisions csv": ["export", "decisions", "--format", "csv"],
}
GOALS = {"audit verify": "< 10 s at 1M, flat memory"}
# The floor: one streaming read of every row, in a child process started the same way, done the cheapest
# way the driver offers: its own cursor (no SQLAlchemy rows), every column as text (no JSON or time parsing
# either), on PostgreSQL a server-side cursor streamed 5,000 rows per round trip.
FLOOR = textwrap.dedent("""
    import os
    from workflows.db import make_engine
    engine = make_engine(os.environ["DATABASE_URL"])
    raw = engine.raw_connection()
    postgres = engine.dialect.name == "postgresql"
    cursor = raw.driver_connection.cursor("floor") if postgres else raw.driver_connection.cursor()
    as_text = "::text" if postgres else ""
    cursor.execute(f"SELECT seq, at{as_text}, actor, action, subject_type, subject_id, subject_slug, "
                   f"before{as_text}, after{as_text}, prev_hash, hash FROM decision_log ORDER BY seq")
    count = 0
    while batch := cursor.fetchmany(5000):
        count += len(batch)
    print(count)
""")



def run(run: Run) -> dict[str, Any]:
    """Fill, run each command at two sizes, print; return the figures."""
    large = run.pick(10_000, 100_000, 1_000_000)
    sizes = (large,) if run.size == "tiny" else (large // 10, large)  # tiny: a smoke test, one size
    figures: dict[str, Any] = {"sizes": sizes, "rows": []}
    for backend in run.backends:
        with fresh_database(backend, run, prefix="evidence") as engine:
            url = database_url(engine)
            print(f"evidence on {backend}")
            print(f"  {'command':<24} {'entries':>10} {'wall s':>8} {'cpu s':>7} {'peak RSS MiB':>13} {'ratio':>6}")
            for size in sizes:
                fill_to(engine, size)
                _, _, floor, _ = measure_steward(["-c", FLOOR], url, module=False)
                for label, command in COMMANDS.items():
                    first, rss, wall, cpu = measure_steward(command, url)
                    print(f"  {label:<24} {size:>10,} {wall:8.2f} {cpu:7.2f} {rss:13.1f} {wall / floor:6.1f}")
                    figures[f"{backend} {label} {size}"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                                                           "peak_rss_mib": round(rss, 1), "floor_s": round(floor, 3),
                                                           "first_line": first}
                    if size == large:
                        figures["rows"].append(figure(f"{backend} {label} {size:,}", wall, floor, GOALS.get(label, "")))
                    if size == large and len(sizes) > 1:
                        figures["rows"].append({"figure": f"{backend} {label} peak RSS {sizes[0]:,} → {size:,}",
                                                "value": f"{figures[f'{backend} {label} {sizes[0]}']['peak_rss_mib']}"
                                                         f" → {rss:.1f} MiB"})
                print(f"  {'floor (read every row)':<24} {size:>10,} {floor:8.2f}")
    return figures


if __name__ == "__main__":
    sys.exit("run it with: python -m bench --only evidence")
