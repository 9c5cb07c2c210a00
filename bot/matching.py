"""Cheaper listener matching: Bolt's built-in matchers given only the body, instead of every argument Bolt offers.

Bolt tries each listener in turn for every request, and each of its built-in matchers (`app.action("x")`,
`app.view("y")`, ...) is called through `build_required_kwargs`, which builds all ~30 arguments a listener
could ask for (the parsed payload five ways, `say`, `respond`, `say_stream` and more) only to pass the body.
With Steward's 32 listeners that was a fifth of an ack's CPU in-process (py-spy on `bench --only ack`'s
button click). The matchers take `body` alone, so handing them `req.body` directly matches exactly the same.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.listener_matcher import ListenerMatcher
from slack_bolt.listener_matcher.builtins import BuiltinListenerMatcher


class BodyMatcher(ListenerMatcher):
    """A built-in matcher whose function takes only the body, called with it directly."""

    def __init__(self, matcher: BuiltinListenerMatcher) -> None:
        self.func = matcher.func

    def matches(self, req: BoltRequest, resp: BoltResponse) -> bool:
        """Whether the listener is for this request, as the built-in matcher decides."""
        return bool(self.func(body=req.body))


def match_on_body(app: App) -> int:
    """Swap every registered listener's body-only built-in matchers for `BodyMatcher`s; how many were swapped."""
    swapped = 0
    for listener in app._listeners:  # Bolt keeps them here, in the order they are tried
        matchers: list[Any] = list(listener.matchers)
        for index, matcher in enumerate(matchers):
            if type(matcher) is BuiltinListenerMatcher and matcher.arg_names == ["body"]:
                matchers[index], swapped = BodyMatcher(matcher), swapped + 1
        listener.matchers = matchers
    return swapped
