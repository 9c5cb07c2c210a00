"""The whole stack as separate processes: `steward serve` over HTTP, `steward worker` on real Redis,
a fresh PostgreSQL database, and the fake Slack Web API in the test process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from tests import signing
from tests.factories import ADMIN, OTHER, OWNER
from tests.fakeslack import FakeSlack

SECRET = "e2e-signing-secret"
TOKEN = "xoxb-test"
E2E_REDIS_DB = 14
STARTUP_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], *, timeout: float = 20.0, what: str = "condition") -> object:
    """Poll until `condition()` is truthy: the stack is asynchronous, so the test waits for an outcome."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def e2e_broker(redis_url: str) -> str:
    """A Redis database for this test's queue, emptied first so no stale task runs."""
    url = redis_url.rsplit("/", 1)[0] + f"/{E2E_REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@dataclass
class Stack:
    """Handles on the running stack."""

    base_url: str
    fake: FakeSlack

    def post(self, body: str, headers: dict[str, str]) -> requests.Response:
        """POST a signed request to /slack/events over real HTTP."""
        return requests.post(f"{self.base_url}/slack/events", data=body.encode(), headers=headers, timeout=10)

    def command(self, text: str, *, user: str = OWNER, channel: str = "C0E2E0001") -> requests.Response:
        """Type `/steward <text>`."""
        body, headers = signing.slash_command(text=text, secret=SECRET, user_id=user, channel_id=channel,
                                              response_url=self.fake.response_url(f"cmd-{text.split()[0]}"))
        return self.post(body, headers)

    def interact(self, payload: dict) -> requests.Response:
        """Send an interaction payload."""
        body, headers = signing.interaction(payload, secret=SECRET)
        return self.post(body, headers)


@pytest.fixture
def stack(fresh_postgres_url: str, e2e_broker: str, tmp_path: Path) -> Iterator[Stack]:
    """Migrate, then start the bot and a worker as real processes; stop both afterwards."""
    fake = FakeSlack().start()
    for user_id, name in ((OWNER, "olive"), (OTHER, "oscar"), (ADMIN, "ada")):
        fake.add_user(user_id, name=name)
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": fresh_postgres_url, "BROKER_URL": e2e_broker, "SLACK_API_URL": fake.url,
           "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": "",
           "STEWARD_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING"}
    steward = [sys.executable, "-m", "steward"]
    subprocess.run([*steward, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("bot", "worker")}
    processes = [
        subprocess.Popen([*steward, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                         stdout=logs["bot"], stderr=subprocess.STDOUT),
        subprocess.Popen([*steward, "worker", "--pool", "threads", "--concurrency", "2"], env=env,
                         stdout=logs["worker"], stderr=subprocess.STDOUT),
    ]
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base_url), timeout=STARTUP_SECONDS, what="the bot's /healthz")
        yield Stack(base_url=base_url, fake=fake)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for handle in logs.values():
            handle.close()
        fake.stop()


def _healthy(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False
