"""Cheaper listener matching and calls: Bolt's built-in matchers given only the body, and each listener only
the arguments it names, instead of every argument Bolt offers.

Bolt tries each listener in turn for every request, and each of its built-in matchers (`app.action("x")`,
`app.view("y")`, ...) is called through `build_required_kwargs`, which builds all ~30 arguments a listener
could ask for (the parsed payload five ways, `say`, `respond`, `say_stream` and more) only to pass the body.
With Steward's 32 listeners that was a fifth of an ack's CPU in-process (py-spy on `bench --only ack`'s
button click). The matchers take `body` alone, so handing them `req.body` directly matches exactly the same.

The listener it finds is then called through the same `build_required_kwargs`, which also makes a `Say`, a
`Respond` and five parsed payloads whatever the listener asks for. Steward's listeners name four or five
arguments, so each is built only when named, by Bolt's own code: a search ack went from 828k to 717k
instructions (`python -m bench.ack_instructions`; the bare app's takes 735k).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.listener.custom_listener import CustomListener
from slack_bolt.listener_matcher import ListenerMatcher
from slack_bolt.listener_matcher.builtins import BuiltinListenerMatcher
from slack_bolt.request.payload_utils import to_action, to_command, to_event, to_options, to_shortcut, to_view


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


# What a listener may name, built only when named (Bolt's build_required_kwargs builds all of these and
# ~20 more, with a Say and a Respond, for every call). `context.respond` and the rest are Bolt's own, so a
# listener gets exactly what Bolt would give it; a name missing here sends the call back to Bolt's way.
_ARGUMENTS: dict[str, Callable[[BoltRequest], Any]] = {
    "ack": lambda req: req.context.ack,
    "body": lambda req: req.body,
    "client": lambda req: req.context.client,
    "context": lambda req: req.context,
    "respond": lambda req: req.context.respond,
    "say": lambda req: req.context.say,
    "action": lambda req: to_action(req.body),
    "command": lambda req: to_command(req.body),
    "event": lambda req: to_event(req.body),
    "options": lambda req: to_options(req.body),
    "shortcut": lambda req: to_shortcut(req.body),
    "view": lambda req: to_view(req.body),
}


class NamedArgumentsListener(CustomListener):
    """Bolt's listener, called with only the arguments its function names (see `_ARGUMENTS`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._all_named_here = set(self.arg_names) <= _ARGUMENTS.keys()

    def run_ack_function(self, *, request: BoltRequest, response: BoltResponse) -> BoltResponse | None:
        """Call the listener as Bolt would, building only what it asks for."""
        if not self._all_named_here:
            return super().run_ack_function(request=request, response=response)
        return self.ack_function(**{name: _ARGUMENTS[name](request) for name in self.arg_names})


def call_with_named_arguments(app: App) -> int:
    """Swap every registered listener for one that builds only the arguments it names; how many were swapped."""
    swapped = 0
    for index, listener in enumerate(app._listeners):
        if type(listener) is CustomListener:
            lean = NamedArgumentsListener(
                app_name=listener.app_name, ack_function=listener.ack_function,
                lazy_functions=listener.lazy_functions, matchers=listener.matchers, middleware=listener.middleware,
                auto_acknowledgement=listener.auto_acknowledgement, ack_timeout=listener.ack_timeout)
            lean.logger = listener.logger
            app._listeners[index], swapped = lean, swapped + 1
    return swapped
