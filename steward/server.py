"""Serving the Bolt app: HTTP through waitress, or Socket Mode with a health endpoint beside it."""

from __future__ import annotations

import logging
import threading

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from waitress import serve as waitress_serve

from bot.app import HEALTH_PATH, wsgi_app
from workflows.settings import Settings

log = logging.getLogger("steward.server")


def serve_http(app: App, *, host: str, port: int) -> None:
    """Serve /slack/events and /healthz over HTTP until interrupted."""
    log.info("Steward listening on http://%s:%s/slack/events", host, port)
    waitress_serve(wsgi_app(app), host=host, port=port, threads=8, ident="steward")


def serve_socket_mode(app: App, settings: Settings, *, host: str, port: int) -> None:
    """Connect to Slack over Socket Mode; keep /healthz on `port` for container health checks."""
    threading.Thread(target=_serve_health, args=(host, port), daemon=True, name="health").start()
    log.info("Steward connecting to Slack in Socket Mode")
    SocketModeHandler(app, settings.slack_app_token.get_secret_value()).start()


def _serve_health(host: str, port: int) -> None:
    def health(environ, start_response):
        ok = environ.get("PATH_INFO") == HEALTH_PATH
        start_response("200 OK" if ok else "404 Not Found", [("Content-Type", "text/plain")])
        return [b"ok" if ok else b"not found"]

    waitress_serve(health, host=host, port=port, threads=1, ident="steward-health")
