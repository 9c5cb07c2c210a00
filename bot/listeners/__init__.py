"""Bolt listeners, one module per kind of Slack request, each with `register(app, ctx)`; `guard` is the check
in front of them all (what a request over HTTP must look like before any listener sees it)."""

from __future__ import annotations

from slack_bolt import App

from bot.context import BotContext
from bot.listeners import access, actions, commands, events, options, recertification, report, reviews, views


def register_all(app: App, ctx: BotContext) -> None:
    """Attach every listener to the app."""
    for module in (commands, actions, access, views, options, events, reviews, recertification, report):
        module.register(app, ctx)
