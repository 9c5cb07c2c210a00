"""Building the running pieces from settings: engine, policy, Celery app and the bot context."""

from __future__ import annotations

import logging
import os
import socket
from functools import partial

from slack_bolt import App
from sqlalchemy import Engine

from bot.app import create_app
from bot.context import BotContext, members_from
from bot.telemetry import AtOnce, QuietLane
from workers import logs
from workers.celery_app import WorkerContext, make_celery
from workers.clock import clock_for
from workers.directory import Directory
from workers.slack_client import make_slack_client
from workers.tasks import decide_now, enqueue_delivery, enqueue_provisioning
from workflows.db import make_engine
from workflows.errors import DomainError
from workflows.policy import Policy, load_policy
from workflows.schema import current_revision, head_revision
from workflows.settings import Settings


class SetupError(DomainError):
    """Steward cannot start as configured; the message says what to change."""


def configure_logging(settings: Settings) -> None:
    """JSON lines (or text, with LOG_FORMAT=text) on stderr at LOG_LEVEL, every secret redacted."""
    logs.configure_logging(settings)


def engine_for(settings: Settings) -> Engine:
    """The configured database's engine."""
    return make_engine(settings.resolved_database_url)


def policy_for(settings: Settings) -> Policy:
    """The validated policy (the packaged default unless STEWARD_POLICY names a file)."""
    return load_policy(settings.steward_policy)


def require_current_schema(engine: Engine) -> None:
    """Refuse to run against a database that `steward db upgrade` has not brought up to date."""
    # Alembic announces its context at INFO; that line would precede our one-line error.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SetupError(f"the database schema is at {current or 'nothing'}, not {head}: "
                         "run `steward db upgrade` first")


def require_slack_credentials(settings: Settings) -> None:
    """The bot needs a bot token and a signing secret (and an app token for Socket Mode)."""
    missing = [name for name, value in (("SLACK_BOT_TOKEN", settings.slack_bot_token),
                                        ("SLACK_SIGNING_SECRET", settings.slack_signing_secret))
               if not value.get_secret_value()]
    if missing:
        raise SetupError(f"{' and '.join(missing)} must be set to connect to Slack (see README: "
                         "Connecting a Slack workspace)")


def build_bot(settings: Settings, engine: Engine) -> App:
    """The Bolt app with its context, enqueuing deliveries and decisions on the configured broker."""
    make_celery(settings)
    client = make_slack_client(settings)
    policy, directory, clock = policy_for(settings), Directory(client), clock_for(settings)
    # Clicks are recorded by the bot itself (see workers.tasks.decide_now), with what a worker would use.
    deciding = WorkerContext(engine=engine, client=client, settings=settings, now=clock, policy=policy)
    ctx = BotContext(settings=settings, engine=engine, policy=policy, directory=directory,
                     enqueue_delivery=enqueue_delivery, members_of=members_from(directory, policy),
                     enqueue_decision=partial(decide_now, context=deciding),
                     enqueue_provisioning=enqueue_provisioning, clock=clock, after_ack=QuietLane().submit,
                     at_once=AtOnce().submit)
    return create_app(ctx, client=client)


def holder_name() -> str:
    """Who holds a lease: host and process, so operators can tell copies apart."""
    return f"{socket.gethostname()}:{os.getpid()}"
