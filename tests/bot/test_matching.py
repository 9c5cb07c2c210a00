"""Listeners are matched on the body alone (bot/matching.py): the same listener answers every kind of request."""

from __future__ import annotations

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.listener_matcher.builtins import BuiltinListenerMatcher
from slack_sdk import WebClient

from bot.app import create_app
from bot.ids import PICKER_PREFIX, Action, Callback, Command
from bot.listeners import register_all
from bot.matching import BodyMatcher, match_on_body
from bot.telemetry import InstrumentedApp
from tests.bot.conftest import CHANNEL, OWNER, TOKEN, block_action

BODIES = [
    *({"command": "/steward", "text": f"{word} x", "user_id": OWNER, "channel_id": CHANNEL} for word in Command),
    *(block_action(action, "1") for action in Action if action != Action.VALUE),
    *({"type": "view_submission", "user": {"id": OWNER}, "view": {"type": "modal", "callback_id": callback, "state": {"values": {}}}}
      for callback in Callback),
    {"type": "block_suggestion", "user": {"id": OWNER}, "action_id": f"{PICKER_PREFIX}0", "block_id": "b", "value": "c"},
    {"type": "event_callback", "event": {"type": "app_home_opened", "user": OWNER, "tab": "home"}},
    {"type": "event_callback", "event": {"type": "user_change", "user": {"id": OWNER, "deleted": True}}},
    {"type": "view_closed", "view": {"type": "modal", "callback_id": "nothing_of_ours"}},
]


def _matched(app, body) -> list[int]:
    request, response = BoltRequest(body="", headers={}), BoltResponse(status=200)
    request.body = body
    return [index for index, listener in enumerate(app._listeners) if listener.matches(req=request, resp=response)]


def test_every_body_only_matcher_is_swapped_and_each_request_finds_the_same_listeners(harness):
    stock = InstrumentedApp(signing_secret="s", client=WebClient(token=TOKEN, base_url=harness.fake.url),
                            token_verification_enabled=False)
    register_all(stock, harness.ctx)
    before = [_matched(stock, body) for body in BODIES]

    swapped = match_on_body(stock)

    assert swapped == len(stock._listeners)  # Steward registers each listener with one built-in matcher
    assert [_matched(stock, body) for body in BODIES] == before
    assert [body for body, found in zip(BODIES, before) if not found] == BODIES[-1:]  # only the closed modal has none


def test_the_app_matches_on_the_body(harness):
    app = create_app(harness.ctx, client=WebClient(token=TOKEN, base_url=harness.fake.url))
    matchers = [matcher for listener in app._listeners for matcher in listener.matchers]
    assert matchers and all(isinstance(matcher, BodyMatcher) for matcher in matchers)
    assert not any(type(matcher) is BuiltinListenerMatcher for matcher in matchers)

