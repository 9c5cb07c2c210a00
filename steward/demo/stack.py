"""The demo's stack: the real bot, worker and scheduler on embedded defaults, with the sandbox as Slack.

Everything runs in a fresh folder: a SQLite database, the file broker, the shared sandbox clock and each
process's log. The processes are the same `steward serve`, `steward worker` and `steward scheduler` an
operator runs; only their Slack (the sandbox, on loopback) and their clock (which the demo moves on) differ.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from sqlalchemy import Engine, text

from steward.sandbox.driver import SlackDriver, wait_for
from steward.sandbox.slack_api import FakeSlack
from workers.clock import SandboxClock
from workflows.db import make_engine
from workflows.policy import default_policy_text
from workflows.schema import upgrade_database

BOT_TOKEN = "xoxb-sandbox-demo"
STARTUP_SECONDS = 45
STOP_GRACE_SECONDS = 10
SCHEDULER_INTERVAL_SECONDS = 1


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DemoStack:
    """A running demo stack, and how to reach it."""

    home: Path
    sandbox: FakeSlack
    env: dict[str, str]
    engine: Engine
    driver: SlackDriver
    clock: SandboxClock
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def bot_url(self) -> str:
        """Where the bot listens."""
        return self.driver.base_url

    def now(self) -> datetime:
        """The stack's time (the sandbox clock)."""
        return self.clock()

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Read the stack's database (behind the scenes: which request number, when a review is due)."""
        with self.engine.connect() as conn:
            return list(conn.execute(text(statement), params))

    def wait(self, condition: Callable[[], Any], *, what: str, timeout: float = 30.0) -> Any:
        """Wait for `condition()` to be truthy (and return it); fail at once, with its log, if a process died."""
        def done_or_dead() -> Any:
            if (name := self.crashed()) is not None:
                raise RuntimeError(f"the {name} exited while waiting for {what}:\n{self.log(name)[-1500:]}")
            return condition()
        return wait_for(done_or_dead, timeout=timeout, what=what)

    def settle(self, *, timeout: float = 30.0, quiet_seconds: float = 0.4) -> None:
        """Wait until every message the stack owes Slack has been sent and the sandbox has gone quiet."""
        def settled() -> bool:
            pending = self.sql("SELECT count(*) FROM outboxmessage WHERE sent_at IS NULL")[0][0]
            if pending:
                return False
            count = len(self.sandbox.calls)
            time.sleep(quiet_seconds)
            return len(self.sandbox.calls) == count
        self.wait(settled, timeout=timeout, what="the stack to deliver every message")

    def run_cli(self, *args: str) -> str:
        """Run a `steward` command against the stack's database; its output (or an error with it)."""
        result = subprocess.run([sys.executable, "-m", "steward", *args], env=self.env, cwd=self.home,
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"steward {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def log(self, name: str) -> str:
        """What one process logged."""
        path = self.home / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a grace period) and the sandbox."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.sandbox.stop()
        self.engine.dispose()

    def crashed(self) -> str | None:
        """The name of a process that has exited, if any."""
        return next((name for name, process in self.processes.items() if process.poll() is not None), None)


def start_stack(home: Path, *, people: list[dict[str, Any]], groups: dict[str, list[str]],
                channels: dict[str, str], port: int | None = None) -> DemoStack:
    """Migrate a fresh SQLite database in `home`, start the sandbox and the three processes, wait for the bot."""
    home.mkdir(parents=True, exist_ok=True)
    sandbox = FakeSlack().start()
    sandbox.valid_tokens.add(BOT_TOKEN)
    for person in people:
        sandbox.add_user(**person)
    policy_path = _write_policy(home / "policy.yaml", groups=groups, channels=channels)
    database_url = f"sqlite:///{(home / 'steward.db').as_posix()}"
    secret = secrets.token_hex(16)
    clock = SandboxClock(home / "clock")
    env = _child_environment({
        "STEWARD_HOME": str(home), "DATABASE_URL": database_url, "SLACK_API_URL": sandbox.url,
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": secret, "STEWARD_POLICY": str(policy_path),
        "STEWARD_SANDBOX_CLOCK": str(clock.path), "LOG_LEVEL": "WARNING",
    })
    engine = make_engine(database_url)
    upgrade_database(engine)
    port = port or free_port()
    stack = DemoStack(home=home, sandbox=sandbox, env=env, engine=engine, clock=clock,
                      driver=SlackDriver(base_url=f"http://127.0.0.1:{port}", sandbox=sandbox, secret=secret))
    commands = {
        "bot": ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        "worker": ["worker", "--pool", "threads", "--concurrency", "2", "--health-port", "0"],
        "scheduler": ["scheduler", "--interval", str(SCHEDULER_INTERVAL_SECONDS), "--health-port", "0"],
    }
    try:
        for name, args in commands.items():
            stack.processes[name] = _spawn(args, env=env, cwd=home, log_path=home / f"{name}.log")
        wait_for(lambda: _healthy(stack.bot_url) or stack.crashed(), timeout=STARTUP_SECONDS,
                 what="the bot to answer /healthz")
        if stack.crashed():
            raise RuntimeError(f"the {stack.crashed()} did not start:\n{stack.log(stack.crashed())[-2000:]}")
    except BaseException:
        stack.stop()
        raise
    return stack


def _child_environment(overrides: dict[str, str]) -> dict[str, str]:
    # Nothing of the operator's own Steward configuration leaks in: the demo never talks to a real Slack
    # or database. (The children also run in the demo's folder, so no .env is read either.)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLACK_", "STEWARD_", "DATABASE_URL", "BROKER_URL", "PROMETHEUS_"))}
    return {**env, **overrides}


def _write_policy(path: Path, *, groups: dict[str, list[str]], channels: dict[str, str]) -> Path:
    data = yaml.safe_load(default_policy_text())
    data["groups"].update(groups)
    data["channels"].update(channels)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _spawn(args: list[str], *, env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "w", encoding="utf-8") as log:
        # Its own session: a terminal's Ctrl-C reaches the demo, which stops the children in order.
        return subprocess.Popen([sys.executable, "-m", "steward", *args], env=env, cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _healthy(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
