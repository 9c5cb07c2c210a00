"""A Bolt app wired to the fake Slack Web API and a real database, driven by signed requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient

from bot.app import create_app
from bot.context import BotContext
from workers.directory import Directory
from tests import signing
from tests.factories import ADMIN, OTHER, OWNER
from tests.fakeslack import FakeSlack
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
    from workflows.policy import default_policy_text
    import yaml

    data = yaml.safe_load(default_policy_text())
    data["groups"]["admins"] = [ADMIN]
    data["groups"]["governance"] = [GOVERNANCE]
    return parse_policy(yaml.safe_dump(data))


@dataclass
class Harness:
    """Sends signed Slack requests to the app and remembers what was queued for delivery."""

    app: Any
    fake: FakeSlack
    ctx: BotContext
    enqueued: list[int] = field(default_factory=list)

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
    ctx = BotContext(settings=settings, engine=engine, policy=bot_policy, directory=Directory(client),
                     enqueue_delivery=enqueued.extend, clock=lambda: now)
    app = create_app(ctx, client=client, process_before_response=True)
    return Harness(app=app, fake=fake, ctx=ctx, enqueued=enqueued)


def submission(view: dict[str, Any], values: dict[str, Any], *, user: str = OWNER) -> dict[str, Any]:
    """A view_submission payload for `view` with input `values` keyed by block id.

    A value may be a str (text input / select), a list (checkboxes / multi-select), or a dict
    already shaped like Slack's element state.
    """
    state: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        state[block["block_id"]] = {element["action_id"]: _element_state(element, values.get(block["block_id"]))}
    submitted = {**view, "id": "V0SUBMIT1", "hash": "h1", "state": {"values": state}}
    return {"type": "view_submission", "user": {"id": user}, "team": {"id": "T0001"}, "view": submitted,
            "api_app_id": "A0001", "trigger_id": "1.2.3"}


def _element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    kind = element["type"]
    if isinstance(value, dict):
        return {"type": kind, **value}
    if kind == "plain_text_input":
        return {"type": kind, "value": value if value is not None else element.get("initial_value")}
    if kind == "users_select":
        return {"type": kind, "selected_user": value if value is not None else element.get("initial_user")}
    if kind in ("static_select", "radio_buttons"):
        chosen = value if value is not None else (element.get("initial_option") or {}).get("value")
        return {"type": kind, "selected_option": {"value": chosen} if chosen else None}
    chosen_values = value if value is not None else [o["value"] for o in element.get("initial_options", [])]
    return {"type": kind, "selected_options": [{"value": v} for v in chosen_values]}


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
