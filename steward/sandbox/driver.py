"""Driving a running Steward as people in Slack would: signed commands, clicks and modal submissions.

`SlackDriver` sends what Slack sends (signed exactly as Slack signs it) to a bot's /slack/events over
real HTTP, and reads what the bot sent back from the sandbox Slack that stands in for Slack's Web API.
The demo plays its story with it, and the end-to-end tests click through theirs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from bot.views.forms import problems_shown
from steward.sandbox import signing
from steward.sandbox.slack_api import TEAM_ID, FakeSlack

APP_ID = "A0001"
DEFAULT_CHANNEL = "C0GENERAL"
REQUEST_TIMEOUT_SECONDS = 10


def wait_for(condition: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy and return it: the stack answers asynchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def submission(view: dict[str, Any], values: dict[str, Any], *, user: str) -> dict[str, Any]:
    """A view_submission payload for `view` with input `values` keyed by block id.

    A value may be a str (text input / select), a list (checkboxes / multi-select), or a dict already
    shaped like Slack's element state; inputs not given keep their initial values.
    """
    state: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        state[block["block_id"]] = {element["action_id"]: element_state(element, values.get(block["block_id"]))}
    submitted = {**view, "id": view.get("id") or "V0SUBMIT1", "hash": "h1", "state": {"values": state}}
    return {"type": "view_submission", "user": {"id": user}, "team": {"id": TEAM_ID}, "view": submitted,
            "api_app_id": APP_ID, "trigger_id": "1.2.3"}


def element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    """How Slack reports one input element's value in a submitted view's state."""
    kind = element["type"]
    if isinstance(value, dict):
        return {"type": kind, **value}
    if kind == "plain_text_input":
        return {"type": kind, "value": value if value is not None else element.get("initial_value")}
    if kind == "users_select":
        return {"type": kind, "selected_user": value if value is not None else element.get("initial_user")}
    if kind in ("static_select", "radio_buttons", "external_select"):
        chosen = value if value is not None else (element.get("initial_option") or {}).get("value")
        return {"type": kind, "selected_option": {"value": chosen} if chosen else None}
    chosen_values = value if value is not None else [o["value"] for o in element.get("initial_options", [])]
    return {"type": kind, "selected_options": [{"value": v} for v in chosen_values]}


def interactive_elements(message: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (block, element) pair a person can click on a message: buttons, menus, accessories."""
    found = []
    for block in message.get("blocks", []):
        for element in [*(block.get("elements") or []), block.get("accessory") or {}]:
            if isinstance(element, dict) and element.get("action_id"):
                found.append((block, element))
    return found


def buttons(message: dict[str, Any]) -> list[str]:
    """The action ids of every button on a message."""
    return [element["action_id"] for _, element in interactive_elements(message) if element.get("type") == "button"]


def find_element(message: dict[str, Any], action_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The block and element with `action_id` on a message, or an error naming what is there."""
    for block, element in interactive_elements(message):
        if element["action_id"] == action_id:
            return block, element
    raise LookupError(f"no {action_id!r} on this message: {[e['action_id'] for _, e in interactive_elements(message)]}")


@dataclass
class SlackDriver:
    """People using Slack, aimed at one bot (`base_url`) whose Web API calls go to `sandbox`."""

    base_url: str
    sandbox: FakeSlack
    secret: str
    channel: str = DEFAULT_CHANNEL

    def post(self, body: str, headers: dict[str, str]) -> requests.Response:
        """POST a signed request to the bot's /slack/events."""
        return requests.post(f"{self.base_url}/slack/events", data=body.encode(), headers=headers,
                             timeout=REQUEST_TIMEOUT_SECONDS)

    def command(self, text: str, *, user: str, channel: str | None = None,
                response_name: str | None = None) -> requests.Response:
        """Type `/steward <text>`; its replies go to the sandbox as `response_url` posts named `response_name`."""
        name = response_name or f"cmd-{text.split()[0] if text.split() else 'help'}"
        body, headers = signing.slash_command(text=text, secret=self.secret, user_id=user,
                                              channel_id=channel or self.channel,
                                              response_url=self.sandbox.response_url(name))
        return self.post(body, headers)

    def interact(self, payload: dict[str, Any]) -> requests.Response:
        """Send an interaction payload (a click, a submission, a menu search)."""
        body, headers = signing.interaction(payload, secret=self.secret)
        return self.post(body, headers)

    def open_modal(self, text: str, *, user: str) -> dict[str, Any]:
        """Type a command that opens a modal; the modal, once the bot has asked Slack to open it."""
        before = len(self.sandbox.views_opened())
        response = self.command(text, user=user)
        _expect_ok(response, f"/steward {text}")
        return wait_for(lambda: self.sandbox.views_opened()[before:], what=f"the modal of `/steward {text}`")[0]

    def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str) -> requests.Response:
        """Submit a modal with these input values (keyed by block id); the bot's answer to the submission."""
        response = self.interact(submission(view, values, user=user))
        _expect_ok(response, "the modal submission")
        return response

    def save(self, view: dict[str, Any], values: dict[str, Any], *, user: str) -> dict[str, Any]:
        """Submit a form that is saved after its ack ("Saving…") and return what its modal shows once the
        save is done. A form refused in the ack, or given back with problems, raises FormRefused."""
        answer = self.submit(view, values, user=user).json()
        if answer.get("response_action") != "update":
            raise FormRefused(f"the form was refused: {answer.get('errors', answer)}")
        view_id = view["id"]

        def outcome() -> dict[str, Any] | None:
            shown = self.sandbox.view(view_id)
            return shown if shown is not None and shown["hash"] != view["hash"] else None
        shown = wait_for(outcome, what=f"the outcome of the form {view.get('callback_id')}")
        problems = problems_shown(shown)
        if problems:
            raise FormRefused(f"the form came back: {json.dumps(problems)[:400]}")
        return shown

    def pick(self, view: dict[str, Any], *, block_id: str, query: str, user: str) -> list[dict[str, Any]]:
        """Type `query` into the external select of `block_id` on a form; the options the bot offers."""
        block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
        payload = {"type": "block_suggestion", "user": {"id": user}, "team": {"id": TEAM_ID}, "api_app_id": APP_ID,
                   "action_id": block["element"]["action_id"], "block_id": block_id, "value": query,
                   "view": {**view, "id": view.get("id") or "V0PICK001"}}
        return self.interact(payload).json()["options"]

    def register(self, kind: str, values: dict[str, Any], *, user: str,
                 lineage: dict[str, str] | None = None) -> None:
        """Register an asset through `/steward register <kind>`, picking lineage by search text."""
        form = self.open_modal(f"register {kind}", user=user)
        values = dict(values)
        for edge, query in (lineage or {}).items():
            options = self.pick(form, block_id=f"edge:{edge}", query=query, user=user)
            if len(options) != 1:
                raise LookupError(f"{query!r} should match exactly one asset, not {options}")
            values[f"edge:{edge}"] = [options[0]["value"]]
        self.save(form, values, user=user)

    def click(self, message: dict[str, Any], action_id: str, *, user: str, option: str | None = None,
              channel: str | None = None, ephemeral: bool = False) -> requests.Response:
        """Click `action_id` on a message as Slack sends the click (for a menu, choose the option whose value
        is `option`). `message` is one the sandbox recorded, or the arguments of a response_url post (an
        ephemeral message, which has no ts or channel of its own: pass `channel`)."""
        block, element = find_element(message, action_id)
        channel = channel or message.get("channel") or self.channel
        ts = message.get("ts") or "1700000000.000900"
        action: dict[str, Any] = {"type": element["type"], "action_id": action_id,
                                  "block_id": block.get("block_id", "b-auto"), "action_ts": f"{time.time():.6f}"}
        if option is None:
            action.update(value=element.get("value", ""), text=element.get("text"))
        else:
            action["selected_option"] = next(o for o in element["options"] if o["value"] == option)
        payload = {
            "type": "block_actions", "user": {"id": user}, "team": {"id": TEAM_ID}, "api_app_id": APP_ID,
            "trigger_id": f"{time.time():.6f}.trigger", "channel": {"id": channel},
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": ephemeral},
            "message": {k: v for k, v in message.items() if k != "channel"},
            "response_url": self.sandbox.response_url(f"click-{action_id}-{user}"), "actions": [action],
        }
        response = self.interact(payload)
        _expect_ok(response, f"the click on {action_id}")
        return response

    def dms(self, user: str) -> list[dict[str, Any]]:
        """The messages in the bot's DM with `user`, as they look now."""
        return self.sandbox.messages(channel=f"D{user}")


class FormRefused(RuntimeError):
    """A form was refused in its ack, or given back after its save with problems under its fields."""


def _expect_ok(response: requests.Response, what: str) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{what} got HTTP {response.status_code}: {response.text[:200]}")
