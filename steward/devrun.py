"""`steward dev`: bot, worker and scheduler as child processes, stopped together on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from workflows.db import make_engine
from workflows.schema import upgrade_database
from workflows.settings import Settings

STOP_GRACE_SECONDS = 10


def run_all(settings: Settings, *, port: int) -> int:
    """Migrate, start the three processes, relay their output, and stop them all on Ctrl-C or a crash."""
    upgrade_database(make_engine(settings.resolved_database_url))
    env = dict(os.environ)
    commands = {
        "bot": ["serve", "--port", str(port)],
        # On one machine the health ports would only collide with anything else listening there;
        # `steward dev` is watched from its terminal, so its worker and scheduler serve none.
        "worker": ["worker", "--pool", "threads", "--concurrency", "2", "--health-port", "0"],
        "scheduler": ["scheduler", "--health-port", "0"],
    }
    children = {name: _spawn(name, args, env) for name, args in commands.items()}
    where = "connected to Slack in Socket Mode" if settings.socket_mode else f"on http://127.0.0.1:{port}/slack/events"
    print(f"steward dev: bot {where}, worker and scheduler running; Ctrl-C stops all three.", flush=True)
    return _supervise(children)


def _spawn(name: str, args: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "steward", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
    threading.Thread(target=_relay, args=(name, process), daemon=True).start()
    return process


def _relay(name: str, process: subprocess.Popen) -> None:
    for line in process.stdout:  # type: ignore[union-attr]
        sys.stdout.write(f"{name:>9} | {line}")
        sys.stdout.flush()


def _supervise(children: dict[str, subprocess.Popen]) -> int:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        while not stop.is_set():
            for name, process in children.items():
                if process.poll() is not None:
                    print(f"steward dev: {name} exited with {process.returncode}; stopping the rest.", flush=True)
                    exit_code = process.returncode or 1
                    stop.set()
                    break
            stop.wait(0.5)
    finally:
        _stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("steward dev: stopped.", flush=True)
    return exit_code


def _stop_all(children: dict[str, subprocess.Popen]) -> None:
    # Each child leads its own session, so a terminal's Ctrl-C reaches only us; we pass on SIGTERM.
    for process in children.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in children.values():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
