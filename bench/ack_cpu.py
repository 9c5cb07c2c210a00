"""Where the CPU of an ack burst goes: Steward against the bare Bolt app, per request, during the burst and after it.

The servers and requests are `ack_overhead.py`'s. For each kind of request, 512 (by default) are sent at one
concurrency to each server; the CPU time (user + system, from /proc) of the server's processes, of a
PostgreSQL server on this machine (processes named `postgres`) and of this client process is read
before and after the burst, and again once Steward's work after its acks is done. On two cores the
client, the bot and PostgreSQL share the CPUs, so whatever the bot spends during a burst is taken from
the acks and from the client that times them.

    .venv/bin/python -m bench.ack_cpu [--concurrency 16] [--assets 20000] [--requests 512] \\
        [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import ack_overhead as ack
from bench.common import Run, database_url, fresh_database
from bench.inventory_data import seed_assets

KINDS = ("slash command", "button click", "modal submission")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (those gone count nothing)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Processes of a PostgreSQL server on this machine (none when it runs elsewhere)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def main(argv: list[str] | None = None) -> int:
    """Seed, serve both, send each kind of burst to each, print CPU per request."""
    parser = argparse.ArgumentParser(prog="python -m bench.ack_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=512, help="per kind and server")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (default: SQLite in a temp dir)")
    args = parser.parse_args(argv)
    run = Run(size="full", postgres_url=args.database_url)
    with (fresh_database(run.backends[-1], run, prefix="ackcpu") as engine,
          tempfile.TemporaryDirectory(prefix="ackcpu-") as home, ack.FakeSlack() as fake):
        seed_assets(engine, args.assets)
        fake.add_user(ack.USER, name="bench")
        env = {**os.environ, "DATABASE_URL": database_url(engine), "SLACK_API_URL": fake.url,
               "SLACK_BOT_TOKEN": ack.TOKEN, "SLACK_SIGNING_SECRET": ack.SECRET, "SLACK_APP_TOKEN": "",
               "STEWARD_HOME": home, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ack.ROOT)}
        env.pop("BROKER_URL", None)
        servers = {"steward": ack.Served([sys.executable, "-m", "steward", "serve", "--workers", "2"], env,
                                         Path(home, "bot.log")),
                   "bare": ack.Served([sys.executable, "-m", "bench.bare_bolt", "--workers", "2"], env,
                                      Path(home, "bare.log"))}
        try:
            form = ack._open_form(servers["steward"], fake)
            print(f"CPU ms per request at concurrency {args.concurrency}, {args.assets:,} assets on {run.backends[-1]}:"
                  " during the burst (server, PostgreSQL, client) and after it, until Steward's answers are sent")
            for kind in KINDS:
                for name, server in servers.items():
                    answered, pids = ack._answered(fake), ack._tree(server.process.pid)
                    before = (cpu_seconds(pids), cpu_seconds(postgres_pids()), time.process_time())
                    took, errors = ack._load(server.port, ack._requests(kind, args.requests, fake, form),
                                             args.concurrency)
                    during = (cpu_seconds(pids), cpu_seconds(postgres_pids()), time.process_time())
                    settled = ack._settle(fake, answered + args.requests) if name == "steward" else 0.0
                    after = (cpu_seconds(pids), cpu_seconds(postgres_pids()))
                    ms = [1000 * (b - a) / args.requests for a, b in zip(before, during)]
                    later = [1000 * (b - a) / args.requests for a, b in zip(during, after)]
                    took.sort()
                    print(f"  {kind:<16} {name:<7} p50 {took[len(took) // 2] * 1000:6.1f} ms | during: server"
                          f" {ms[0]:5.2f} pg {ms[1]:5.2f} client {ms[2]:5.2f} | after ({settled:.1f} s): server"
                          f" {later[0]:5.2f} pg {later[1]:5.2f} | errors {errors}")
        finally:
            for server in servers.values():
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
