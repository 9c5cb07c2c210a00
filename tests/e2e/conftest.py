"""The whole stack as separate processes: `steward serve` over HTTP, `steward worker` on real Redis,
a fresh PostgreSQL database, and the fake Slack Web API in the test process.

`stack` is the default stack; `make_stack(env=...)` starts one with extra environment (a policy file,
another broker). The `Stack` handle drives it the way Slack would (signed commands, clicks on the
messages the fake recorded, modal submissions), and reaches behind it where a story needs to: SQL on
its database, `steward sweep` as a subprocess, a `steward scheduler` process (`start_scheduler`), and
killing and restarting its worker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, text

from bot.ids import Action
from steward.sandbox.driver import SlackDriver, buttons, wait_for
from steward.sandbox.slack_api import FakeSlack, _Reply
from tests.conftest import service_missing
from tests.factories import ADMIN, OTHER, OWNER
from workflows.db import make_engine
from workflows.policy import default_policy_text

SECRET = "e2e-signing-secret"
TOKEN = "xoxb-test"
E2E_REDIS_DB = 14
STARTUP_SECONDS = 30
CHANNEL = "C0E2E0001"
# People the access stories need besides the owner, the other owner and the admin.
REQUESTER = "U0REQSTR1"
SECURITY = "U0SECURE1"
GOVERNANCE = "U0GOVERN1"
PEOPLE = ((OWNER, "olive"), (OTHER, "oscar"), (ADMIN, "ada"), (REQUESTER, "rita"), (SECURITY, "sam"),
          (GOVERNANCE, "grace"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def e2e_broker(redis_url: str) -> str:
    """A Redis database for this test's queue, emptied first so no stale task runs."""
    url = redis_url.rsplit("/", 1)[0] + f"/{E2E_REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


def write_policy(path: Path, *, groups: dict[str, list[str]]) -> Path:
    """The packaged default policy with these group members, written to `path` (for STEWARD_POLICY)."""
    data = yaml.safe_load(default_policy_text())
    data["groups"].update(groups)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ---- a fake Slack that can hold a request at its door ----------------------------------------------


@dataclass
class Hold:
    """One request held at the fake's door: `arrived` is set when it comes in, `release()` lets it go."""

    path: str
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    args: dict[str, Any] = field(default_factory=dict)

    def release(self) -> None:
        """Let the held request finish (it fails; see HoldingFakeSlack)."""
        self.released.set()


class HoldingFakeSlack(FakeSlack):
    """FakeSlack that can stall the next call to a method, for "a task is in flight" stories.

    A held call waits outside the fake's lock (so everything else keeps working), and once released it
    answers 503 without being recorded or posting anything: it plays a request that never reached
    Slack because the worker sending it died with the connection. A responder set with `on()` cannot
    do this: responders run under the fake's lock, so a blocking one would stall every other call.
    """

    MAX_HOLD_SECONDS = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._holds: list[Hold] = []
        self._holds_lock = threading.Lock()

    def hold_next(self, method: str) -> Hold:
        """Stall the next call to Web API `method` until the returned Hold is released."""
        hold = Hold(path=f"/api/{method}")
        with self._holds_lock:
            self._holds.append(hold)
        return hold

    def release_all(self) -> None:
        """Release every hold, taken or not (so no server thread outlives the test)."""
        with self._holds_lock:
            holds, self._holds = list(self._holds), []
        for hold in holds:
            hold.release()

    def _handle(self, path: str, args: dict[str, Any], headers: dict[str, str]) -> _Reply:
        with self._holds_lock:
            hold = next((h for h in self._holds if h.path == path and not h.arrived.is_set()), None)
            if hold is not None:
                hold.args = dict(args)
                hold.arrived.set()
        if hold is None:
            return super()._handle(path, args, headers)
        hold.released.wait(self.MAX_HOLD_SECONDS)
        return _Reply(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable")


@dataclass
class _StackDriver(SlackDriver):
    """The driver, sending through its stack's `post`."""

    stack: Any = None

    def post(self, body: str, headers: dict[str, str]) -> requests.Response:
        """POST through the stack."""
        return self.stack.post(body, headers)


# ---- the stack -------------------------------------------------------------------------------------


@dataclass
class Stack:
    """Handles on the running stack."""

    base_url: str
    fake: HoldingFakeSlack
    env: dict[str, str]
    engine: Engine
    tmp_path: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    worker: subprocess.Popen | None = None
    # Where each process answers /healthz, /readyz and /metrics, by the name of its log ("bot", "worker-1"...).
    health_urls: dict[str, str] = field(default_factory=dict)
    _logs: list[Any] = field(default_factory=list)

    # -- Slack, as a person uses it (steward.sandbox.driver does the work; OWNER acts by default) -------

    @property
    def slack(self) -> SlackDriver:
        """People in Slack, aimed at this stack's bot and sandbox (every request goes through `post`)."""
        return _StackDriver(base_url=self.base_url, sandbox=self.fake, secret=SECRET, channel=CHANNEL, stack=self)

    def post(self, body: str, headers: dict[str, str]) -> requests.Response:
        """POST a signed request to /slack/events over real HTTP (a subclass may pick another bot)."""
        return requests.post(f"{self.base_url}/slack/events", data=body.encode(), headers=headers, timeout=10)

    def command(self, text: str, *, user: str = OWNER, channel: str = CHANNEL) -> requests.Response:
        """Type `/steward <text>`."""
        return self.slack.command(text, user=user, channel=channel)

    def interact(self, payload: dict) -> requests.Response:
        """Send an interaction payload."""
        return self.slack.interact(payload)

    def open_modal(self, text: str, *, user: str = OWNER) -> dict[str, Any]:
        """Type a command that opens a modal, and return the modal once Slack has been asked to open it."""
        return self.slack.open_modal(text, user=user)

    def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str = OWNER) -> requests.Response:
        """Submit a modal with these input values (keyed by block id); returns Slack's view of the ack."""
        return self.slack.submit(view, values, user=user)

    def pick(self, view: dict[str, Any], *, edge: str, query: str, user: str = OWNER) -> list[dict[str, Any]]:
        """Type `query` into the form's lineage picker for `edge`; the options Steward offers."""
        return self.slack.pick(view, block_id=f"edge:{edge}", query=query, user=user)

    def register(self, kind: str, values: dict[str, Any], *, user: str = OWNER,
                 lineage: dict[str, str] | None = None) -> None:
        """Register an asset through `/steward register <kind>`, picking lineage by search text."""
        self.slack.register(kind, values, user=user, lineage=lineage)

    def click(self, message: dict[str, Any], action_id: str, *, user: str, channel: str | None = None,
              ephemeral: bool = False) -> requests.Response:
        """Click the button `action_id` on a message, as Slack sends the click (see SlackDriver.click)."""
        return self.slack.click(message, action_id, user=user, channel=channel, ephemeral=ephemeral)

    def dms(self, user: str) -> list[dict[str, Any]]:
        """The messages in the bot's DM with `user`, as they look now."""
        return self.slack.dms(user)

    # -- behind the scenes ----------------------------------------------------------------------------

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run SQL on the stack's database in its own transaction; rows for a SELECT."""
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    def undelivered(self) -> list[Any]:
        """Outbox rows not yet sent (and not given up on)."""
        return self.sql("SELECT id, method, \"user\", payload, next_attempt_at, attempts, last_error "
                        "FROM outboxmessage WHERE sent_at IS NULL ORDER BY id")

    def wait_delivered(self, *, timeout: float = 20.0, what: str = "every outbox message to be sent") -> None:
        """Wait until the outbox is empty: every message the story implied so far has reached Slack."""
        wait_for(lambda: not self.undelivered(), timeout=timeout, what=what)

    def sweep(self) -> str:
        """Run `steward sweep` as a subprocess with the stack's environment (what cron would run)."""
        result = subprocess.run([sys.executable, "-m", "steward", "sweep"], env=self.env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, f"steward sweep failed: {result.stdout}{result.stderr}"
        return result.stdout

    def start_worker(self) -> subprocess.Popen:
        """Start a `steward worker` (threads pool) with the stack's environment, its health on a free port."""
        process = self._start("worker", "--pool", "threads", "--concurrency", "2")
        self.worker = process
        return process

    def start_scheduler(self, *, interval: int = 1) -> subprocess.Popen:
        """Start a `steward scheduler --interval <interval>` with the stack's environment: it takes the
        leader lease and enqueues a sweep every `interval` seconds, which the worker runs."""
        return self._start("scheduler", "--interval", str(interval))

    def start_bot(self, *args: str) -> str:
        """Start another `steward serve` (with extra `args`, such as `--workers 2`) on a free port, sharing
        the stack's database, broker and fake Slack; wait until it answers and return its base URL."""
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        self.health_urls[f"bot-{len(self.processes)}"] = base_url  # the name _start gives its log
        self._start("serve", "--host", "127.0.0.1", "--port", str(port), *args, name="bot", health_port=None)
        wait_for(lambda: _healthy(base_url), timeout=STARTUP_SECONDS, what=f"the bot at {base_url}")
        return base_url

    def _start(self, command: str, *args: str, name: str = "", health_port: int | None = 0) -> subprocess.Popen:
        # Each worker and scheduler serves its health on a port of its own (0: pick a free one), so
        # copies side by side never fight over the default port. The log is closed in stop().
        name = f"{name or command}-{len(self.processes)}"
        if health_port is not None:
            health_port = health_port or _free_port()
            args = (*args, "--health-host", "127.0.0.1", "--health-port", str(health_port))
            self.health_urls[name] = f"http://127.0.0.1:{health_port}"
        log = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115
        self._logs.append(log)
        process = subprocess.Popen([sys.executable, "-m", "steward", command, *args], env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def kill_worker(self) -> None:
        """`kill -9` the worker: no warm shutdown, no acks, no cleanup."""
        assert self.worker is not None and self.worker.poll() is None, "the worker is not running"
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def log(self, name: str) -> str:
        """What a process has logged so far ("bot", "worker-1", ...)."""
        path = self.tmp_path / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop every process this stack started, then release the fake and the engine."""
        self.fake.release_all()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for handle in self._logs:
            handle.close()
        self.fake.stop()
        self.engine.dispose()


@pytest.fixture
def make_stack(request: pytest.FixtureRequest, fresh_postgres_url: str,
               tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start the stack (migrate, then the bot and a worker as real processes), with extra environment
    such as STEWARD_POLICY or a BROKER_URL of the test's own and extra `steward serve` arguments;
    everything it started is stopped afterwards."""
    started: list[Stack] = []

    def start(env: dict[str, str] | None = None, serve_args: Sequence[str] = ()) -> Stack:
        env = dict(env or {})
        # The shared Redis is needed (and emptied) only when the test brings no broker of its own.
        broker = env.get("BROKER_URL") or request.getfixturevalue("e2e_broker")
        fake = HoldingFakeSlack().start()
        for user_id, name in PEOPLE:
            fake.add_user(user_id, name=name)
        port = _free_port()
        full_env = {**os.environ, "DATABASE_URL": fresh_postgres_url, "BROKER_URL": broker,
                    "SLACK_API_URL": fake.url, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
                    "SLACK_APP_TOKEN": "", "STEWARD_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING",
                    **env}
        stack = Stack(base_url=f"http://127.0.0.1:{port}", fake=fake, env=full_env,
                      engine=make_engine(fresh_postgres_url), tmp_path=tmp_path)
        started.append(stack)
        steward = [sys.executable, "-m", "steward"]
        subprocess.run([*steward, "db", "upgrade"], env=full_env, check=True, capture_output=True, timeout=120)
        bot_log = open(tmp_path / "bot.log", "w")  # noqa: SIM115 - closed in Stack.stop()
        stack._logs.append(bot_log)
        stack.processes.append(subprocess.Popen(
            [*steward, "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args], env=full_env,
            stdout=bot_log, stderr=subprocess.STDOUT))
        stack.health_urls["bot"] = stack.base_url
        stack.start_worker()
        wait_for(lambda: _healthy(stack.base_url), timeout=STARTUP_SECONDS, what="the bot's /healthz")
        return stack

    try:
        yield start
    finally:
        for stack in started:
            stack.stop()


@pytest.fixture
def stack(make_stack) -> Stack:
    """The stack with the default environment."""
    return make_stack()


def _healthy(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


# ---- a Redis of the test's own ---------------------------------------------------------------------


@dataclass
class OwnRedis:
    """A redis-server subprocess on a free port, with no persistence: stopping it loses every queued task."""

    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The broker URL for it."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        assert self.process is None or self.process.poll() is not None, "redis is already running"
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                 "no", "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Kill it (SIGKILL: like a crash, nothing is saved) and wait for the port to be refused."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        wait_for(lambda: not self._answers(), timeout=10, what="redis to go away")

    def idle(self) -> bool:
        """No task is waiting in the queue or running unacked. (kombu's Redis transport keeps delivered,
        unacked messages in the `unacked` hash until the worker acks them.)"""
        client = redis.Redis(port=self.port)
        return client.llen("celery") == 0 and client.hlen("unacked") == 0

    def _answers(self) -> bool:
        try:
            # No retries: redis-py's default retries a refused connection for about four seconds.
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)).ping())
        except redis.ConnectionError:
            return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Redis this test may stop and start, so the shared one is never disturbed."""
    if shutil.which("redis-server") is None:
        service_missing("redis-server", "the executable is not on PATH")
    server = OwnRedis(port=_free_port(), log_path=tmp_path / "redis.log")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


# ---- the access stories' cast and first steps --------------------------------------------------------

APPROVERS = (OWNER, SECURITY, OTHER)  # the high tier's steps: owner, security, data_owners (OTHER's dataset)


@pytest.fixture
def access_stack(make_stack, tmp_path: Path) -> Stack:
    """The stack with a policy naming a security reviewer, a governance fallback and an admin."""
    policy = write_policy(tmp_path / "policy.yaml",
                          groups={"security": [SECURITY], "governance": [GOVERNANCE], "admins": [ADMIN]})
    return make_stack(env={"STEWARD_POLICY": str(policy)})


def register_high_risk_model(stack: Stack) -> None:
    """Through Slack: OTHER's restricted dataset `churn-events`, OWNER's model `churn-model` trained on it,
    and OWNER's system `retention-offers` using the model, classified high (so the model is high too)."""
    stack.register("dataset", {"name": "Churn events", "team": "Growth", "sensitivity": "restricted",
                               "contains_personal_data": ["yes"]}, user=OTHER)
    stack.register("model", {"name": "Churn model", "details.task": "classification"}, user=OWNER,
                   lineage={"trained_on": "churn-events"})
    stack.register("system", {"name": "Retention offers",
                              "details.intended_purpose": "Decide which customers get a retention offer"},
                   user=OWNER, lineage={"uses": "churn-model"})
    form = stack.open_modal("classify retention-offers", user=OWNER)
    result = stack.slack.save(form, {"annex_iii_areas": ["employment"], "annex_i_safety_component": "no"},
                              user=OWNER)
    assert "High" in json.dumps(result), result
    assert stack.sql("SELECT effective_tier FROM asset WHERE slug = 'churn-model'")[0][0] == "high"
    stack.wait_delivered()


def approval_dm(stack: Stack, approver: str, request_id: int) -> dict[str, Any] | None:
    """The approver's DM about a request while it still offers Approve, or None."""
    return next((m for m in stack.dms(approver) if m["text"].startswith(f"Access request #{request_id}:")
                 and Action.APPROVE in buttons(m)), None)


def approve_all(stack: Stack, *, request_no: int) -> dict[str, dict[str, Any]]:
    """Wait for each approver's DM about request #`request_no` and click Approve in it, one after another
    (each waits for the worker to record the decision and redraw the messages, as a person would see
    the update before the next one looks). Returns each approver's DM as first delivered."""
    messages = {}
    for approver in APPROVERS:
        messages[approver] = wait_for(lambda a=approver: approval_dm(stack, a, request_no),
                                      what=f"{approver}'s DM about request #{request_no}")
        assert "churn-events" in json.dumps(messages[approver]), "the DM should name the upstream data"
    for approver in APPROVERS:
        stack.click(messages[approver], Action.APPROVE, user=approver)
        wait_for(lambda a=approver: stack.sql("SELECT 1 FROM decision WHERE request_id = :r AND approver_id = :a",
                                              r=request_no, a=a), what=f"{approver}'s approval")
        stack.wait_delivered()
    wait_for(lambda: stack.sql("SELECT 1 FROM access_request WHERE id = :r AND status = 'approved'",
                               r=request_no), what=f"request #{request_no} to be approved")
    return messages
