"""A Bolt app wired to the fake Slack Web API and a real database, driven by signed requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from sqlmodel import select

from bot.app import create_app
from bot.context import BotContext, members_from
from bot.telemetry import AtOnce, QuietLane
from bot.traffic import RequestTraffic
from bot.views.messages import render_outbox
from steward.sandbox import driver, signing
from steward.sandbox.slack_api import FakeSlack
from tests.factories import ADMIN, OTHER, OWNER
from workers.directory import Directory
from workflows import access
from workflows.db import transaction
from workflows.errors import DomainError
from workflows.models import OutboxMessage
from workflows.outbox import OutboxMethod, add_message, added_message_ids
from workflows.policy import Policy, parse_policy
from workflows.settings import Settings

SECRET = "test-signing-secret"
TOKEN = "xoxb-test"
GOVERNANCE = "U0GOVERN1"
CHANNEL = "C0GENERAL"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """The fake Slack Web API with a few people in it."""
    with FakeSlack() as slack:
        for user_id, name in ((OWNER, "olive"), (OTHER, "oscar"), (ADMIN, "ada"), (GOVERNANCE, "grace")):
            slack.add_user(user_id, name=name)
        slack.add_user("U0BOTTY01", name="robot", is_bot=True)
        slack.add_user("U0GONE001", name="gone", deleted=True)
        yield slack


@pytest.fixture
def bot_policy() -> Policy:
    """The default policy with an admin and a governance lead named."""
    import yaml

    from workflows.policy import default_policy_text

    data = yaml.safe_load(default_policy_text())
    data["groups"]["admins"] = [ADMIN]
    data["groups"]["governance"] = [GOVERNANCE]
    return parse_policy(yaml.safe_dump(data))


@dataclass(frozen=True)
class QueuedDecision:
    """One Approve or Deny a listener handed to the (stand-in) decision queue."""

    request_id: int
    approver_id: str
    outcome: str
    reason: str
    channel: str


@dataclass
class Harness:
    """Sends signed Slack requests to the app and remembers what was queued for delivery and decision."""

    app: Any
    fake: FakeSlack
    ctx: BotContext
    enqueued: list[int] = field(default_factory=list)
    decisions: list[QueuedDecision] = field(default_factory=list)
    provisioned: list[int] = field(default_factory=list)  # webhook jobs handed to the (stand-in) queue
    queue_accepts: bool = True  # False plays a broker that is down

    def enqueue_decision(self, request_id: int, approver_id: str, outcome: str, reason: str, channel: str) -> bool:
        """The BotContext hook: remember the decision instead of sending it to Celery."""
        if not self.queue_accepts:
            return False
        self.decisions.append(QueuedDecision(request_id, approver_id, outcome, reason, channel))
        return True

    def run_decisions(self) -> list[str]:
        """Decide every queued click now, as the worker would: approve/deny in one transaction, or a
        "decision_refused" ephemeral to the clicker when the domain says no. Returns "decided"/"refused"."""
        results = []
        while self.decisions:
            results.append(decide(self.ctx.engine, self.decisions.pop(0), now=self.ctx.clock(),
                                  enqueued=self.enqueued, policy=self.ctx.policy))
        return results

    def dispatch(self, body: str, headers: dict[str, str]) -> BoltResponse:
        """Hand one raw request to Bolt, as the HTTP adapter would."""
        return self.app.dispatch(BoltRequest(body=body, headers={k.lower(): [v] for k, v in headers.items()}))

    def command(self, text: str, *, user: str = OWNER, channel: str = CHANNEL) -> BoltResponse:
        """Type `/steward <text>` in Slack."""
        body, headers = signing.slash_command(text=text, secret=SECRET, user_id=user, channel_id=channel,
                                              response_url=self.fake.response_url("cmd"))
        return self.dispatch(body, headers)

    def interact(self, payload: dict[str, Any]) -> BoltResponse:
        """Send an interaction payload (block_actions, view_submission, block_suggestion)."""
        body, headers = signing.interaction(payload, secret=SECRET)
        return self.dispatch(body, headers)

    def event(self, inner: dict[str, Any]) -> BoltResponse:
        """Send an Events API callback."""
        body, headers = signing.event(signing.event_callback(inner), secret=SECRET)
        return self.dispatch(body, headers)

    def replies(self) -> list[dict[str, Any]]:
        """Everything posted to response URLs, oldest first."""
        return [c.args for c in self.fake.calls_to("response_url")]

    def last_reply_text(self) -> str:
        """All text of the newest response_url reply, blocks included."""
        return json.dumps(self.replies()[-1], ensure_ascii=False)

    def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str = OWNER) -> dict[str, Any]:
        """Submit a form and return what its modal shows once the save after the ack is done: the view the
        modal was last updated to, or {"errors": ...} when the ack refused the form."""
        payload = submission(view, values, user=user)
        before = len(self.fake.calls_to("views.update"))
        response = self.interact(payload)
        assert response.status == 200
        answer = json.loads(response.body)
        if answer.get("response_action") == "errors":
            return {"errors": answer["errors"]}
        assert answer["response_action"] == "update" and ":hourglass_flowing_sand:" in json.dumps(answer["view"])
        updates = self.fake.calls_to("views.update")[before:]
        assert updates and updates[-1].args["view_id"] == payload["view"]["id"]
        return updates[-1].args["view"]

    def opened_view(self) -> dict[str, Any]:
        """The newest view opened, pushed or updated."""
        calls = [c for c in self.fake.calls if c.method in ("views.open", "views.push", "views.update")]
        return calls[-1].args["view"]


@pytest.fixture
def harness(engine, fake, bot_policy, now) -> Harness:
    """The app on a real database (SQLite and PostgreSQL), the fake Slack, and a fixed clock."""
    settings = Settings(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.url)
    client = WebClient(token=TOKEN, base_url=fake.url)
    enqueued: list[int] = []
    directory = Directory(client)
    ctx = BotContext(settings=settings, engine=engine, policy=bot_policy, directory=directory,
                     enqueue_delivery=enqueued.extend, clock=lambda: now,
                     members_of=members_from(directory, bot_policy))
    harness = Harness(app=None, fake=fake, ctx=ctx, enqueued=enqueued)
    ctx.enqueue_decision = harness.enqueue_decision
    ctx.enqueue_provisioning = harness.provisioned.extend
    harness.app = create_app(ctx, client=client)
    return harness


def as_in_production(harness: Harness, *, client: WebClient | None = None) -> Harness:
    """The harness's app wired as `steward serve` wires it: the work after each ack runs on threads of its own
    (`AtOnce`, and a quiet lane that needs no quiet spell), so Bolt answers as soon as the listener acks."""
    ctx = replace(harness.ctx, at_once=AtOnce().submit,
                  after_ack=QuietLane(RequestTraffic(quiet=0), patience=0).submit)
    app = create_app(ctx, client=client or WebClient(token=TOKEN, base_url=harness.fake.url))
    return Harness(app=app, fake=harness.fake, ctx=ctx, enqueued=harness.enqueued)


def decide(engine, call: QueuedDecision, *, now: datetime, enqueued: list[int], policy: Policy | None = None) -> str:
    """Run one queued decision through workflows.access, the way the decision task does."""
    try:
        with transaction(engine) as session:
            if call.outcome == access.APPROVE:
                access.approve(session=session, request_id=call.request_id, approver_id=call.approver_id, now=now,
                               policy=policy)
            else:
                access.deny(session=session, request_id=call.request_id, approver_id=call.approver_id,
                            reason=call.reason, now=now)
            queued = added_message_ids(session)
        outcome = "decided"
    except DomainError as exc:
        with transaction(engine) as session:
            add_message(session=session, method=OutboxMethod.EPHEMERAL, channel=call.channel, user=call.approver_id,
                        now=now, topic=f"request:{call.request_id}",
                        payload={"template": "decision_refused", "request_id": call.request_id,
                                 "message": str(exc), "decided_by": getattr(exc, "decided_by", "")})
            queued = added_message_ids(session)
        outcome = "refused"
    enqueued.extend(queued)
    return outcome


def outbox(engine, *, template: str | None = None, user: str | None = None) -> list[OutboxMessage]:
    """Outbox rows, oldest first, optionally only one template's or one person's."""
    with transaction(engine) as session:
        rows = list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())
    return [r for r in rows if (template is None or r.payload.get("template") == template)
            and (user is None or r.user == user)]


def rendered(engine, row: OutboxMessage) -> dict[str, Any]:
    """What delivery would send for `row` now; an update row redraws the row it updates."""
    with transaction(engine) as session:
        if row.method == OutboxMethod.UPDATE:
            row = session.get(OutboxMessage, row.updates_id)
        return render_outbox(session, row.payload)


def submission(view: dict[str, Any], values: dict[str, Any], *, user: str = OWNER) -> dict[str, Any]:
    """A view_submission payload for `view` with input `values` keyed by block id (see steward.sandbox.driver)."""
    return driver.submission(view, values, user=user)


def block_action(action_id: str, value: str, *, user: str = OWNER, view: dict[str, Any] | None = None,
                 response_url: str | None = None, selected: str | None = None) -> dict[str, Any]:
    """A block_actions payload for one click."""
    action: dict[str, Any] = {"action_id": action_id, "block_id": "b1", "type": "button", "value": value,
                              "action_ts": "1700000000.1"}
    if selected is not None:
        action = {"action_id": action_id, "block_id": "b1", "type": "static_select",
                  "selected_option": {"value": selected}, "action_ts": "1700000000.1"}
    payload: dict[str, Any] = {"type": "block_actions", "user": {"id": user}, "team": {"id": "T0001"},
                               "api_app_id": "A0001", "trigger_id": "1.2.3", "actions": [action]}
    if view is not None:
        payload["view"] = {**view, "id": "V0OPEN001", "hash": "h1"}
        payload["container"] = {"type": "view", "view_id": "V0OPEN001"}
    if response_url:
        payload["response_url"] = response_url
        payload["container"] = {"type": "message", "message_ts": "1.1", "channel_id": CHANNEL}
        payload["channel"] = {"id": CHANNEL}
    return payload
