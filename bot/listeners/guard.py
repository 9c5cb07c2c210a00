"""The payload guard: what every listener may trust about a request from Slack over HTTP.

`GuardedRequestHandler` is Bolt's WSGI handler with a check in front. Slack always sends the same shapes,
so a body Bolt cannot decode or parse, or a payload whose shape breaks what the listeners read, is a bug
or an attacker: it gets a 400 and one warning line in the log, and no listener (nor Bolt's own payload
helpers, which would raise on it) ever sees it. Over Socket Mode payloads come from Slack itself, on a
connection Steward opened, so only HTTP needs the check. The guard also removes what no database can
store and Slack never sends (NUL characters, unpaired surrogates) from every string.

The check runs before Bolt verifies the signature, so an unsigned malformed body is a 400 rather than a
401; either way nothing runs. What the values mean (ids, choices, who may act) is checked by each
listener and the domain, as always.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.response import BoltResponse

from bot.listeners.body import read_request

log = logging.getLogger("steward.bot")
MALFORMED = "malformed payload"
Shape = dict[str, Any]  # key -> a type, a nested Shape, or a one-item list holding the Shape of each item

_ELEMENT: Shape = {"type": str, "value": (str, type(None)), "selected_user": (str, type(None)),
                   "selected_option": (dict, type(None)), "selected_options": [{"value": str}]}
_VIEW: Shape = {"id": str, "hash": str, "type": str, "callback_id": str, "private_metadata": str,
                "blocks": [dict], "state": {"values": dict}}
_USER: Shape = {"id": str}
_COMMON: Shape = {"user": _USER, "trigger_id": str, "response_url": str, "view": _VIEW, "container": dict,
                  "channel": dict, "team": (dict, type(None))}
# What Bolt itself reads from any payload, before it knows whether a listener wants it.
_ANY: Shape = {"event": dict, "view": dict, "actions": [dict], "container": dict, "authorizations": [dict]}
# What the listeners read, by the kind of request; `REQUIRED` lists what must be there at all.
SHAPES: dict[str, Shape] = {
    "command": {"user_id": str, "text": str, "trigger_id": str, "channel_id": str, "response_url": str},
    "block_actions": {**_COMMON, "actions": [{"action_id": str, "block_id": str, "value": str,
                                              "selected_option": {"value": str}}]},
    "view_submission": {**_COMMON},
    "block_suggestion": {**_COMMON, "action_id": str, "block_id": str, "value": str},
    "event_callback": {"event": {"type": str}},
}
# The events Steward listens to, and what their listeners read.
EVENTS: dict[str, tuple[Shape, tuple[str, ...]]] = {
    "app_home_opened": ({"user": str, "tab": str}, ("user",)),
    "user_change": ({"user": {"id": str, "deleted": bool}}, ("user", "id")),
}
REQUIRED: dict[str, tuple[tuple[Any, ...], ...]] = {
    "command": (("user_id",), ("response_url",), ("trigger_id",)),
    "block_actions": (("user", "id"), ("actions", 0, "action_id"), ("trigger_id",)),
    "view_submission": (("user", "id"), ("view",), ("trigger_id",)),
    "block_suggestion": (("user", "id"), ("action_id",)),
    "event_callback": (("event", "type"),),
}


class GuardedRequestHandler(SlackRequestHandler):
    """Bolt's WSGI handler, answering an unreadable or malformed request with 400 instead of running it."""

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        """Read the request (`bot.listeners.body`), check its shape, then hand it to the app."""
        try:
            bolt_request, unclean = read_request(request.get_body(), query=request.query_string,
                                                 headers=request.get_headers())
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            # Unsigned requests reach this point too, so only the kind of problem is logged, never the body.
            log.warning("refused a request whose body cannot be read (%s)", type(exc).__name__)
            return BoltResponse(status=400, body=MALFORMED)
        problem = payload_problem(bolt_request.body)
        if problem:
            log.warning("refused a malformed payload: %.200r", problem)  # repr: it may quote the sender's keys
            return BoltResponse(status=400, body=MALFORMED)
        if unclean:
            clean_text(bolt_request.body)
        return self.app.dispatch(bolt_request)


def request_kind(body: dict[str, Any]) -> str | None:
    """Which of the shapes above a payload claims to be (None: Bolt answers it, or nothing handles it)."""
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if isinstance(kind, str) and kind in SHAPES else None


def payload_problem(body: dict[str, Any]) -> str | None:
    """Why the payload does not have the shape its kind promises, or None when it does."""
    kind = request_kind(body)
    problem = _shape_problem(body, _ANY, "payload")
    if problem or kind is None:
        return problem
    for path in REQUIRED[kind]:
        problem = _missing(body, path)
        if problem:
            return problem
    problem = _shape_problem(body, SHAPES[kind], kind)
    if problem is None and kind == "view_submission":
        problem = _state_problem(body["view"])
    if problem is None and kind == "event_callback" and body["event"]["type"] in EVENTS:
        shape, required = EVENTS[body["event"]["type"]]
        problem = _missing(body["event"], required) or _shape_problem(body["event"], shape, "event")
    return problem


def _missing(node: Any, path: tuple[Any, ...]) -> str | None:
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        else:
            node = node[key] if isinstance(node, list) and isinstance(key, int) and len(node) > key else None
    return f"{'.'.join(map(str, path))} is missing" if node in (None, "", [], {}) else None


def _shape_problem(node: dict[str, Any], shape: Shape, where: str) -> str | None:
    for key, expected in shape.items():
        if key not in node:
            continue
        value, at = node[key], f"{where}.{key}"
        if isinstance(expected, dict):
            problem = (f"{at} is not an object" if not isinstance(value, dict)
                       else _shape_problem(value, expected, at))
        elif isinstance(expected, list):
            problem = _items_problem(value, expected[0], at)
        else:
            problem = None if _is(value, expected) else f"{at} has the wrong type"
        if problem:
            return problem
    return None


def _is(value: Any, expected: type | tuple[type, ...]) -> bool:
    # JSON true is a bool, and bool is an int in Python: only a field that expects a bool accepts one.
    wants_bool = expected is bool or (isinstance(expected, tuple) and bool in expected)
    return isinstance(value, expected) and (wants_bool or not isinstance(value, bool))


def _items_problem(value: Any, item: Any, at: str) -> str | None:
    if not isinstance(value, list):
        return f"{at} is not a list"
    for index, entry in enumerate(value):
        if isinstance(item, dict):
            problem = f"{at}[{index}] is not an object" if not isinstance(entry, dict) \
                else _shape_problem(entry, item, f"{at}[{index}]")
        else:
            problem = None if isinstance(entry, item) else f"{at}[{index}] has the wrong type"
        if problem:
            return problem
    return None


def _state_problem(view: dict[str, Any]) -> str | None:
    # Submitted values: {block_id: {action_id: element}}, each element as _ELEMENT describes.
    for block_id, actions in view.get("state", {}).get("values", {}).items():
        if not isinstance(actions, dict):
            return f"state.{block_id} is not an object"
        for action_id, element in actions.items():
            at = f"state.{block_id}.{action_id}"
            problem = f"{at} is not an object" if not isinstance(element, dict) \
                else _shape_problem(element, _ELEMENT, at)
            if problem is None and isinstance(element.get("selected_option"), dict):
                problem = _shape_problem(element["selected_option"], {"value": str}, at)
            if problem:
                return problem
    return None


def clean_text(node: Any) -> Any:
    """Remove NUL characters and unpaired surrogates from every string, in place (PostgreSQL cannot
    store NUL, and neither database can encode a lone surrogate)."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = clean_text(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            node[index] = clean_text(value)
    elif isinstance(node, str):
        if "\x00" in node:
            node = node.replace("\x00", "")
        if not node.isascii():
            node = node.encode("utf-8", "replace").decode("utf-8")
    return node
