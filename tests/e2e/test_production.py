"""Production shape: two bots (gunicorn, two worker processes each), two Celery workers and two schedulers
on one PostgreSQL database and one Redis. An access request is driven across both bots, each request
going to the other bot from the last, and every decision, grant and message must happen exactly once.
Then one bot is stopped with SIGTERM while a request is half-way through arriving: the request completes
and the bot exits 0.
"""

from __future__ import annotations

import http.client
import json
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from steward.sandbox import signing
from tests.e2e.conftest import (
    APPROVERS,
    CHANNEL,
    GOVERNANCE,
    REQUESTER,
    SECRET,
    SECURITY,
    Stack,
    approve_all,
    register_high_risk_model,
    wait_for,
    write_policy,
)
from tests.factories import ADMIN

pytestmark = pytest.mark.e2e


@dataclass
class Alternating(Stack):
    """The stack seen through several bots: each Slack request goes to the next bot in turn."""

    bots: tuple[str, ...] = ()
    sent: Counter = field(default_factory=Counter)

    @classmethod
    def over(cls, stack: Stack, bots: tuple[str, ...]) -> Alternating:
        """A view of `stack` (same processes, fake Slack and database) that alternates between `bots`."""
        return cls(**{f.name: getattr(stack, f.name) for f in fields(Stack)}, bots=bots)

    def post(self, body: str, headers: dict[str, str]) -> requests.Response:
        """POST a signed request to the next bot's /slack/events."""
        bot = self.bots[sum(self.sent.values()) % len(self.bots)]
        self.sent[bot] += 1
        return requests.post(f"{bot}/slack/events", data=body.encode(), headers=headers, timeout=10)


def readyz(base_url: str) -> requests.Response | None:
    """The process's /readyz answer, or None while it does not listen yet."""
    try:
        return requests.get(f"{base_url}/readyz", timeout=5)
    except requests.ConnectionError:
        return None


def request_count(metrics_text: str) -> float:
    """Slack requests the bot has handled, summed over listeners (and over its worker processes)."""
    return sum(float(value) for value in re.findall(r"^steward_request_seconds_count\{[^}]*\} (\S+)$",
                                                    metrics_text, re.MULTILINE))


def children(pid: int) -> list[int]:
    """The processes `pid` started that are still running (gunicorn's workers, for its master)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@pytest.fixture
def production(make_stack, tmp_path: Path) -> Alternating:
    """Two bots with two gunicorn workers each, two Celery workers and two schedulers, all running."""
    policy = write_policy(tmp_path / "policy.yaml",
                          groups={"security": [SECURITY], "governance": [GOVERNANCE], "admins": [ADMIN]})
    stack = make_stack(env={"STEWARD_POLICY": str(policy)}, serve_args=["--workers", "2"])
    second_bot = stack.start_bot("--workers", "2")
    stack.start_worker()
    stack.start_scheduler(interval=1)
    stack.start_scheduler(interval=1)
    return Alternating.over(stack, (stack.base_url, second_bot))


def test_two_of_everything_decide_once_deliver_once_and_stop_gracefully(production: Alternating):
    stack = production
    first_bot, second_bot = stack.bots

    # Every process answers /readyz: two bots, two workers, two schedulers.
    assert sorted(re.sub(r"-\d+$", "", name) for name in stack.health_urls) == [
        "bot", "bot", "scheduler", "scheduler", "worker", "worker"]
    for name, url in stack.health_urls.items():
        answer = wait_for(lambda u=url: readyz(u), what=f"{name}'s /readyz")
        assert answer.status_code == 200, f"{name}: {answer.text}"

    # Exactly one scheduler leads (its /readyz says so, and the lease table agrees); the other stands by,
    # and is ready all the same.
    schedulers = {name: url for name, url in stack.health_urls.items() if name.startswith("scheduler")}
    leading = wait_for(lambda: [name for name, url in schedulers.items() if "leader: yes" in readyz(url).text],
                       what="a scheduler to lead")
    assert len(leading) == 1
    standby = next(name for name in schedulers if name not in leading)
    assert "leader: no (standby)" in readyz(schedulers[standby]).text
    holder = stack.sql("SELECT holder FROM leaderlock WHERE name = 'scheduler'")[0][0]
    assert holder in readyz(schedulers[leading[0]]).text

    # The story, each request to the other bot: register the model and its data, ask for access, and the
    # three approvers approve (their clicks land on alternating bots too).
    register_high_risk_model(stack)
    form = stack.open_modal("request churn-model", user=REQUESTER)
    stack.submit(form, {"level": "use", "duration_hours": "24", "justification": "Score the Q3 campaign"},
                 user=REQUESTER)
    approve_all(stack, request_no=1)
    assert stack.sent[first_bot] >= 5 and stack.sent[second_bot] >= 5, stack.sent

    # Every decision once: one per approver, one grant, and the log records each step once.
    assert sorted(row[0] for row in stack.sql("SELECT approver_id FROM decision WHERE request_id = 1")) == sorted(
        APPROVERS)
    assert stack.sql("SELECT status FROM access_request WHERE id = 1")[0][0] == "approved"
    assert [tuple(row) for row in stack.sql("SELECT grantee_id, status FROM access_grant")] == [(REQUESTER, "active")]
    logged = dict(stack.sql("SELECT action, count(*) FROM decision_log WHERE action LIKE 'access.%' "
                            "GROUP BY action"))
    assert logged == {"access.requested": 1, "access.approved_step": 3, "access.approved": 1, "access.granted": 1}, logged

    # Every message once: no (channel, text) was posted twice, each approver got one request DM and the
    # requester one approval, and Slack saw exactly one post per outbox row delivered.
    wait_for(lambda: not stack.undelivered(), what="every outbox message to be sent")
    posts = stack.fake.calls_to("chat.postMessage")
    repeated = [key for key, n in Counter((c.args["channel"], c.args["text"]) for c in posts).items() if n > 1]
    assert repeated == [], f"posted more than once: {repeated}"
    for approver in APPROVERS:
        asks = [m for m in stack.dms(approver) if m["text"].startswith("Access request #1")]
        assert len(asks) == 1, f"{approver} got {len(asks)} DMs about request #1"
    approved = [m for m in stack.dms(REQUESTER) if "was approved" in json.dumps(m)]
    assert len(approved) == 1
    delivered = stack.sql("SELECT count(*) FROM outboxmessage WHERE method IN ('post', 'dm') "
                          "AND sent_at IS NOT NULL")[0][0]
    assert len(posts) == delivered

    # /metrics on a bot merges its two workers: it counts every Slack request this bot was sent.
    metrics = requests.get(f"{first_bot}/metrics", timeout=5)
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    wait_for(lambda: request_count(requests.get(f"{first_bot}/metrics", timeout=5).text) == stack.sent[first_bot],
             what=f"{first_bot}/metrics to count its {stack.sent[first_bot]} requests")

    # SIGTERM with a request in flight: the request completes, then the bot exits 0.
    in_flight_request_survives_sigterm(stack, second_bot)


def in_flight_request_survives_sigterm(stack: Stack, bot: str) -> None:
    """Send half a request to `bot`, SIGTERM it, send the rest: the answer is 200 and the bot exits 0."""
    host, port = urlsplit(bot).hostname, urlsplit(bot).port
    server = next(p for p in stack.processes if str(port) in p.args)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    # A first request on the connection proves a worker has accepted it before the signal.
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b"ok\n"
    body, headers = signing.slash_command(text="help", secret=SECRET, user_id=REQUESTER, channel_id=CHANNEL,
                                          response_url=stack.fake.response_url("cmd-help-in-flight"))
    data = body.encode()
    connection.putrequest("POST", "/slack/events")
    for name, value in {**headers, "Content-Length": str(len(data))}.items():
        connection.putheader(name, value)
    connection.endheaders(data[: len(data) // 2])

    workers = wait_for(lambda: children(server.pid), what="the bot's gunicorn workers")
    assert len(workers) == 2
    server.terminate()
    # The idle worker leaves at once; the busy one waits for its request, so the signal has reached both.
    wait_for(lambda: len(children(server.pid)) == 1, what="the idle worker to exit")
    assert server.poll() is None, "the bot exited with a request in flight"

    connection.send(data[len(data) // 2:])
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert server.wait(timeout=30) == 0
    # The listener's work after the ack finished too: the help reached the response_url.
    helped = [c for c in stack.fake.calls_to("response_url") if c.name == "cmd-help-in-flight"]
    assert len(helped) == 1 and "/steward" in json.dumps(helped[0].args), helped
    assert readyz(bot) is None, "the bot still listens after it exited"
