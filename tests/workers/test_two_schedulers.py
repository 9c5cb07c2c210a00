"""Two `steward scheduler` processes on one database: only the lease holder ever sweeps, and when it
is killed (`kill -9`: no shutdown, no release) the other takes over within the lease's time to live.

Both run with `--interval 1` (so a lease of 3 s) against a SQLite file and the embedded file broker.
Each sweep the schedulers enqueue is a file in the broker's folder whose Celery headers name the
process that sent it (`origin`: gen<pid>@host), so the test counts, per process, who swept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from steward.sandbox.driver import wait_for
from workers.tasks import SWEEP
from workflows.db import make_engine

INTERVAL = 1
LEASE_TTL = 3 * INTERVAL  # workers.scheduler.default_lease_ttl
TICKS = 5  # ticks both copies run side by side before the leader is killed


class Sweeps:
    """The sweep tasks enqueued on the file broker, by the pid of the process that sent each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def by_pid(self) -> Counter[int]:
        """How many sweeps each process has enqueued so far."""
        counts: Counter[int] = Counter()
        if not self.folder.is_dir():
            return counts
        for path in self.folder.glob("*.msg"):
            try:
                headers = json.loads(path.read_text(encoding="utf-8"))["headers"]
            except (OSError, ValueError, KeyError):
                continue  # being written right now; counted on the next look
            if headers.get("task") == SWEEP:
                counts[int(headers["origin"].removeprefix("gen").split("@")[0])] += 1
        return counts


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of an embedded setup under tmp_path, migrated by `steward db upgrade`."""
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "STEWARD_POLICY")}
    env.update(STEWARD_HOME=str(tmp_path / "home"), DATABASE_URL=f"sqlite:///{(tmp_path / 's.db').as_posix()}",
               SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL="http://127.0.0.1:1/api/", LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "-m", "steward", "db", "upgrade"], env=env, check=True, capture_output=True,
                   timeout=120)
    return env


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[Engine]:
    engine = make_engine(env["DATABASE_URL"])
    yield engine
    engine.dispose()


@pytest.fixture
def start(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start `steward scheduler --interval 1` copies; all are stopped after the test."""
    started: list[subprocess.Popen] = []

    def run() -> subprocess.Popen:
        log = open(tmp_path / f"scheduler-{len(started)}.log", "w")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen([sys.executable, "-m", "steward", "scheduler", "--interval", str(INTERVAL),
                                    "--health-port", "0"], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def holder(engine: Engine) -> int | None:
    """The pid of the lease holder (holders are "host:pid"), or None."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT holder FROM leaderlock WHERE name = 'scheduler'")).first()
    return int(row[0].rsplit(":", 1)[1]) if row else None


def test_two_schedulers_never_both_sweep_and_the_survivor_takes_over(start, engine, tmp_path):
    sweeps = Sweeps(tmp_path / "home" / "broker")
    a, b = start(), start()
    pids = {a.pid, b.pid}
    leader_pid = wait_for(lambda: holder(engine), timeout=30, what="a scheduler to take the lease")
    assert leader_pid in pids
    wait_for(lambda: sweeps.by_pid()[leader_pid], timeout=10, what="the leader's first sweep")
    assert len(pids) == 2 and a.poll() is None and b.poll() is None

    # Side by side for TICKS more ticks: every sweep comes from the lease holder, at most one per tick.
    begun, before = time.monotonic(), sweeps.by_pid()[leader_pid]
    wait_for(lambda: sweeps.by_pid()[leader_pid] >= before + TICKS, timeout=TICKS * INTERVAL * 3 + 5,
             what=f"{TICKS} more sweeps by the leader")
    elapsed = time.monotonic() - begun
    seen = sweeps.by_pid()
    assert a.poll() is None and b.poll() is None, "both schedulers should still be running"
    assert set(seen) == {leader_pid}, f"only the leader may sweep: {seen}"
    assert holder(engine) == leader_pid
    swept = seen[leader_pid] - before
    assert swept <= elapsed / INTERVAL + 2, f"{swept} sweeps in {elapsed:.1f}s: more than one per tick"

    # kill -9 the leader: it cannot release the lease, so the other waits for it to expire, then leads.
    leader = a if a.pid == leader_pid else b
    follower = b if leader is a else a
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    killed_at, swept_by_dead = time.monotonic(), sweeps.by_pid()[leader_pid]
    wait_for(lambda: sweeps.by_pid()[follower.pid], timeout=LEASE_TTL + 3 * INTERVAL + 5,
             what="the survivor's first sweep")
    took_over = time.monotonic() - killed_at
    assert took_over <= LEASE_TTL + 2 * INTERVAL + 1.5, f"took over after {took_over:.1f}s"
    assert holder(engine) == follower.pid
    # The dead leader swept nothing after it died, and the survivor keeps sweeping.
    assert sweeps.by_pid()[leader_pid] == swept_by_dead
    first = sweeps.by_pid()[follower.pid]
    wait_for(lambda: sweeps.by_pid()[follower.pid] > first, timeout=5 * INTERVAL, what="the survivor's next sweep")
