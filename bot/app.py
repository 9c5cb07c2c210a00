"""The Bolt app factory: signature checks, listeners, and a WSGI entry for HTTP mode."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.context import BotContext
from bot.listeners import register_all

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def make_client(*, token: str, base_url: str) -> WebClient:
    """A Web API client aimed at `base_url` (Slack in production, the fake in tests)."""
    return WebClient(token=token, base_url=base_url)


def create_app(ctx: BotContext, *, client: WebClient | None = None,
               process_before_response: bool = False) -> App:
    """Build the Bolt app with every listener registered."""
    settings = ctx.settings
    client = client or make_client(token=settings.slack_bot_token.get_secret_value(),
                                   base_url=settings.slack_api_url)
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=process_before_response,
        # auth.test at start-up would make the app unbuildable without Slack; the first call checks the token.
        token_verification_enabled=False,
        logger=logging.getLogger("steward.bolt"),
    )
    register_all(app, ctx)
    return app


def wsgi_app(app: App) -> Callable[[dict[str, Any], Callable], Iterable[bytes]]:
    """A WSGI application: Slack requests at /slack/events, a health check at /healthz."""
    handler = SlackRequestHandler(app)

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        if path == EVENTS_PATH:
            return handler(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return application
