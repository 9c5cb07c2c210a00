"""Listeners are matched on the body alone and given only what they name (bot/matching.py): the same listener
answers every kind of request, with the same arguments Bolt would give it."""

from __future__ import annotations

from slack_bolt import Ack, BoltRequest, BoltResponse
from slack_bolt.kwargs_injection import build_required_kwargs
from slack_bolt.listener_matcher.builtins import BuiltinListenerMatcher
from slack_sdk import WebClient

from bot.app import create_app
from bot.ids import PICKER_PREFIX, Action, Callback, Command
from bot.listeners import register_all
from bot.matching import BodyMatcher, NamedArgumentsListener, call_with_named_arguments, match_on_body
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


def _request_for(body: dict, client: WebClient) -> BoltRequest:
    request = BoltRequest(body=body, mode="socket_mode")  # a parsed body, its context built from it by Bolt
    request.context["client"], request.context["ack"] = client, Ack()
    return request


def test_each_listener_is_given_exactly_what_bolt_would_give_it(harness):
    client = WebClient(token=TOKEN, base_url=harness.fake.url)
    app = create_app(harness.ctx, client=client)
    assert app._listeners and all(type(listener) is NamedArgumentsListener for listener in app._listeners)
    checked = 0
    for body in [*BODIES, {**BODIES[0], "response_url": f"{harness.fake.url}/respond"}]:
        request, response = _request_for(body, client), BoltResponse(status=200)
        for listener in (found for found in app._listeners if found.matches(req=request, resp=response)):
            given: dict = {}
            function, listener.ack_function = listener.ack_function, lambda **kwargs: given.update(kwargs)
            try:
                listener.run_ack_function(request=request, response=response)
            finally:
                listener.ack_function = function
            bolt = build_required_kwargs(logger=listener.logger, required_arg_names=list(listener.arg_names),
                                         request=request, response=response, this_func=function)
            assert given.keys() == bolt.keys() == set(listener.arg_names)
            assert all(given[name] is bolt[name] or given[name] == bolt[name] for name in bolt), listener.arg_names
            checked += 1
    assert checked >= len(BODIES) - 1  # every body but the closed modal's found its listener


def test_a_listener_naming_an_argument_steward_does_not_build_gets_it_from_bolt(harness):
    app = InstrumentedApp(signing_secret="s", client=WebClient(token=TOKEN, base_url=harness.fake.url),
                          token_verification_enabled=False)
    given: dict = {}

    @app.command("/steward")
    def with_logger(ack, logger, context) -> None:
        given.update(ack=ack, logger=logger, context=context)

    assert call_with_named_arguments(app) == 1
    request = _request_for(BODIES[0], app.client)
    app._listeners[0].run_ack_function(request=request, response=BoltResponse(status=200))
    assert given["logger"] is app._listeners[0].logger
    assert given["ack"] is request.context.ack and given["context"] is request.context
