"""The floor under Steward's acks: a bare Bolt app whose listeners only ack, on `steward serve`'s own server.

Its listeners run on the request thread (`process_before_response`), the fastest way Bolt acks: Bolt's
default runs each on its executor and polls for the ack every 10 ms, which added 10 ms to every request of
the floor at concurrency 1 and made Steward look faster than a bare app (0.2-0.4× bare).

`python -m bench.bare_bolt --port P --workers N --threads T` runs `steward.server.serve_http` itself, the
same gunicorn configuration, with the Steward app swapped for this one behind Bolt's own WSGI handler, so
the ratio of the two latencies is what Steward's listeners and middleware (its request guard included) add. Reads SLACK_SIGNING_SECRET and
SLACK_BOT_TOKEN from the environment, as `steward serve` does.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from steward import runtime, server
from workers.health import PATHS, WSGIApp, health_app
from workflows.settings import Settings

ANYTHING = re.compile(".*")


def bare_app(settings: Settings) -> App:
    """A Bolt app acking every command, action and view submission, and doing nothing else."""
    # Bolt authorizes each request with auth.test (cached), so the floor pays for that as Steward does.
    # Listeners ack on the request thread, as Steward's do (see the module docstring).
    client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    app = App(signing_secret=settings.slack_signing_secret.get_secret_value(), client=client,
              token_verification_enabled=False, process_before_response=True)

    def ack_only(ack: Any) -> None:
        ack()

    app.command(ANYTHING)(ack_only)
    app.action(ANYTHING)(ack_only)
    app.view(ANYTHING)(ack_only)
    return app


def bare_wsgi_app(app: App) -> WSGIApp:
    """Bolt's own WSGI handler at /slack/events (health paths answered, so the bench sees it start).

    Not Steward's `bot.app.wsgi_app`: its request guard and body reader are Steward's, measured on
    Steward's side."""
    bolt, health = SlackRequestHandler(app), health_app()

    def application(environ: dict[str, Any], start_response: Any) -> Any:
        serve = health if environ.get("PATH_INFO", "") in PATHS else bolt
        return serve(environ, start_response)

    return application


def main() -> None:
    """Serve the bare app with `steward serve`'s server and options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    settings = Settings()
    # Swap only what is served: serve_http builds it in each worker through these two names.
    runtime.build_bot = lambda settings, engine: bare_app(settings)
    server.bot_wsgi_app = lambda app, settings, engine: bare_wsgi_app(app)
    server.serve_http(settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                      graceful_timeout=5)


if __name__ == "__main__":
    main()
