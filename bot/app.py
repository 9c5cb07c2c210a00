"""The Bolt app factory: signature checks, listeners, and a WSGI entry for HTTP mode."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.context import BotContext
from bot.listeners import register_all
from bot.telemetry import InstrumentedApp
from bot.traffic import TRAFFIC
from bot.listeners.guard import GuardedRequestHandler
from bot.matching import call_with_named_arguments, match_on_body
from workers.health import HEALTHZ_PATH, PATHS, WSGIApp, health_app
from workers.slack_client import make_slack_client

EVENTS_PATH = "/slack/events"
HEALTH_PATH = HEALTHZ_PATH


def create_app(ctx: BotContext, *, client: WebClient | None = None) -> App:
    """Build the Bolt app with its telemetry and every listener registered.

    Listeners ack, hand the rest of their work to `ctx.at_once` or `ctx.after_ack`, and return, so Bolt
    answers when the listener returns (process_before_response), on the request thread: see bot/telemetry.py.
    """
    settings = ctx.settings
    # Bolt's App with a request id for the logs and latency metrics by listener.
    app = InstrumentedApp(
        # Without one passed in, the one configured client (retries, Slack call metrics).
        client=client or make_slack_client(settings),
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=True,
        # auth.test at start-up would make the app unbuildable without Slack; the first call checks the token.
        token_verification_enabled=False,
        logger=logging.getLogger("steward.bolt"),
    )
    register_all(app, ctx)
    match_on_body(app)
    call_with_named_arguments(app)
    return app


def wsgi_app(app: App, *, health: WSGIApp | None = None) -> WSGIApp:
    """A WSGI application: Slack requests at /slack/events; /healthz, /readyz and /metrics from `health`.

    Without `health`, /readyz checks nothing (enough for a benchmark; `steward serve` passes the real one).
    """
    handler = GuardedRequestHandler(app)  # an unreadable body is a 400, not a 500
    health = health or health_app()

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in PATHS:
            return health(environ, start_response)
        if path == EVENTS_PATH:
            with TRAFFIC.request():  # answered (acked) when this returns: the body is already in memory
                return handler(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return application
