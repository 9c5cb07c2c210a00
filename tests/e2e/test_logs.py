"""The logs of a whole story, at DEBUG: every line of every process is a JSON object, requests and tasks are
tagged with their ids, and no secret appears anywhere (bot token, signing secret, database password,
webhook secret), nor anything shaped like a Slack token.

The story: a high-risk model is registered and classified, access to it is requested and approved by
every step, a webhook provisioning connector sets the grant up, and a scheduler sweeps. The bot token
and the webhook secret are fresh random values; the database URL carries a password (PostgreSQL here
trusts local connections, so any password connects). The app token is left out: setting it would put
`steward serve` in Socket Mode instead of the HTTP mode the stack drives.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.ids import Action
from tests.e2e.conftest import (
    ADMIN,
    APPROVERS,
    GOVERNANCE,
    REQUESTER,
    SECRET,
    SECURITY,
    OwnRedis,
    Stack,
    approval_dm,
    register_high_risk_model,
    wait_for,
)
from workflows import provisioning
from workflows.policy import default_policy_text

pytestmark = pytest.mark.e2e

BOT_TOKEN = f"xoxb-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}"
WEBHOOK_SECRET = f"whsec-{secrets.token_hex(16)}"
DB_PASSWORD = f"pw-{secrets.token_hex(12)}"
SECRET_ENV = "STEWARD_E2E_IAM_SECRET"
SLACK_TOKEN = re.compile(r"\b(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]+")
# Celery's signal handler writes this straight to the terminal (os.write), bypassing logging.
CELERY_SHUTDOWN_NOTICE = re.compile(r"^worker: (Warm|Cold) shutdown \(MainProcess\)$")


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that accepts every event whose signature checks out with the secret."""

    verified: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = provisioning.verify(secret=WEBHOOK_SECRET, timestamp=self.headers[provisioning.TIMESTAMP_HEADER],
                                 body=body, signature=self.headers[provisioning.SIGNATURE_HEADER])
        if ok:
            self.verified.append(json.loads(body))
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep the test's output clean
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """The webhook receiver on a free port of 127.0.0.1; its URL."""
    Receiver.verified = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/steward/events"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def logged_stack(make_stack, tmp_path: Path, receiver: str, fresh_postgres_url: str, own_redis: OwnRedis) -> Stack:
    """The access stack at DEBUG with random secrets and a webhook connector provisioning every grant, on a
    Redis of its own (so no other stack's worker takes its tasks, and no stray task reaches its worker)."""
    data = yaml.safe_load(default_policy_text())
    data["groups"].update({"security": [SECURITY], "governance": [GOVERNANCE], "admins": [ADMIN]})
    data["connectors"] = {"iam": {"type": "webhook", "url": receiver, "secret_env": SECRET_ENV}}
    data["provisioning_connector"] = "iam"
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(data), encoding="utf-8")
    database_url = make_url(fresh_postgres_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    stack = make_stack(env={"STEWARD_POLICY": str(policy), "SLACK_BOT_TOKEN": BOT_TOKEN, "LOG_LEVEL": "DEBUG",
                            "LOG_FORMAT": "json", "DATABASE_URL": database_url, "BROKER_URL": own_redis.url,
                            SECRET_ENV: WEBHOOK_SECRET})
    stack.fake.valid_tokens.add(BOT_TOKEN)
    return stack


def approve_every_step(stack: Stack, *, request_no: int) -> None:
    """Each approver, in turn, clicks Approve in their DM about the request, once the one before has decided."""
    for approver in APPROVERS:
        dm = wait_for(lambda a=approver: approval_dm(stack, a, request_no), what=f"{approver}'s DM")
        stack.click(dm, Action.APPROVE, user=approver)
        wait_for(lambda a=approver: stack.sql("SELECT 1 FROM decision WHERE request_id = :r AND approver_id = :a",
                                              r=request_no, a=a), what=f"{approver}'s approval")


def stop_processes(stack: Stack) -> None:
    """Stop every process the stack started (gracefully), so their logs are complete."""
    for process in stack.processes:
        if process.poll() is None:
            process.terminate()
    for process in stack.processes:
        process.wait(timeout=30)


def test_a_whole_story_logs_json_with_ids_and_never_a_secret(logged_stack: Stack):
    stack = logged_stack
    stack.start_scheduler(interval=1)
    register_high_risk_model(stack)
    form = stack.open_modal("request churn-model", user=REQUESTER)
    stack.submit(form, {"level": "use", "duration_hours": "24", "justification": "Score the Q3 campaign"},
                 user=REQUESTER)
    approve_every_step(stack, request_no=1)
    # The connector sets the grant up: a signed webhook event, then the grant is active.
    wait_for(lambda: stack.sql("SELECT 1 FROM access_grant WHERE status = 'active'"), what="the grant")
    assert [event["event"] for event in Receiver.verified] == ["grant"]
    # The scheduler's sweeps run on the worker.
    wait_for(lambda: "steward.sweep" in logged(stack, "worker"), what="a sweep on the worker")
    # Not waiting for the outbox to empty: a redraw racing its original on the worker's other thread waits
    # out the original's claim (minutes, see workers/delivery.py), and these logs need no more of the story.
    wait_for(lambda: [m for m in stack.dms(REQUESTER) if "approved" in json.dumps(m)], what="the requester's news")
    stop_processes(stack)

    names = sorted(path.stem for path in stack.tmp_path.glob("*.log") if path.stem != "redis")
    assert {"bot", "worker-1", "scheduler-2"} <= set(names), names
    for name in names:
        text = stack.log(name)
        for secret in (BOT_TOKEN, SECRET, WEBHOOK_SECRET, DB_PASSWORD):
            assert secret not in text, f"a secret leaked into {name}.log"
        assert not SLACK_TOKEN.search(text), f"a Slack token leaked into {name}.log"
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or CELERY_SHUTDOWN_NOTICE.match(line):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                pytest.fail(f"{name}.log line {number} is not JSON: {line[:200]}")
            assert isinstance(entry, dict) and {"timestamp", "level", "logger", "message"} <= set(entry), line
    bot = entries(stack, "bot")
    assert any("request_id" in e and e["logger"].startswith("slack_sdk") for e in bot), \
        "the bot's Web API calls are logged with the request they serve"
    worker = entries(stack, "worker-1")
    assert any("task_id" in e and e["logger"].startswith("slack_sdk") for e in worker), \
        "the worker's deliveries are logged with their task"
    assert any("task_id" in e and "Provisioning job" in e["message"] for e in worker)


def logged(stack: Stack, prefix: str) -> str:
    """Everything logged so far by the processes whose log names start with `prefix`."""
    return "".join(stack.log(path.stem) for path in stack.tmp_path.glob(f"{prefix}*.log"))


def entries(stack: Stack, name: str) -> list[dict[str, Any]]:
    """The JSON entries of one process's log."""
    return [json.loads(line) for line in stack.log(name).splitlines() if line.startswith("{")]
