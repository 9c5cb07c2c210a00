"""Bolt listeners, one module per kind of Slack request, each with `register(app, ctx)`; `guard` is the check
in front of them all (what a request over HTTP must look like before any listener sees it)."""

from __future__ import annotations

from slack_bolt import App

from bot.context import BotContext
from bot.listeners import access, actions, commands, events, options, recertification, report, reviews, views


def register_all(app: App, ctx: BotContext) -> None:
    """Attach every listener to the app."""
    # Bolt tries the listeners in this order and each try costs a few microseconds, whatever the request.
    # Form submissions come first: their ack is the only one that waits on a listener's own work.
    for module in (views, commands, actions, access, options, events, reviews, recertification, report):
        module.register(app, ctx)
