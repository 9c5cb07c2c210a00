"""Fixtures for the workers tests: the fake Slack API, a client for it, a settable clock, a context,
renderers, and helpers to read what was enqueued on the embedded file broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import Session

from steward.sandbox.slack_api import DEFAULT_TOKEN, FakeSlack
from workers import celery_app
from workers.celery_app import WorkerContext
from workflows.db import transaction
from workflows.models import AccessRequest, Grant, OutboxMessage
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy
from workflows.settings import Settings


class Clock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward and return the new reading."""
        self.now += timedelta(**delta)
        return self.now


def render(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """A stand-in for bot.views.messages.render_outbox: the payload's text, in one section."""
    section = {"type": "section", "text": {"type": "mrkdwn", "text": payload["text"]}}
    return {"text": payload["text"], "blocks": [section]}


def render_state(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """A stand-in for the real renderer that, like it, draws from stored state: template, record, status."""
    template = payload["template"]
    if "asset_id" in payload:
        text = f"{template} asset #{payload['asset_id']}"
    elif "grant_id" in payload:
        grant = session.get(Grant, payload["grant_id"])
        text = f"{template} grant #{grant.id} {grant.status.value}"
    else:
        request = session.get(AccessRequest, payload["request_id"])
        text = f"{template} #{payload['request_id']} {request.status.value if request else 'missing'}"
    if template == "decision_refused":
        text += f" | {payload['message']} | by {payload['decided_by'] or '-'}"
    return {"text": text}


@pytest.fixture
def fresh_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process-wide app and context reset for the test, and restored afterwards."""
    for name in ("_app", "_context", "_context_settings"):
        monkeypatch.setattr(celery_app, name, None)
    for var in ("BROKER_URL", "DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_API_URL", "STEWARD_POLICY"):
        monkeypatch.delenv(var, raising=False)


def take_messages(app) -> list:
    """Every task message waiting in the app's default queue, consumed over a fresh connection."""
    taken = []
    with app.connection_for_read() as conn, conn.SimpleQueue(app.conf.task_default_queue) as queue:
        while True:
            try:
                message = queue.get_nowait()
            except queue.Empty:
                return taken
            message.ack()
            taken.append(message)


def run_message(app, message):
    """Run the task a broker message names, in-process, with its arguments."""
    args, kwargs, _ = message.decode()
    return app.tasks[message.headers["task"]].run(*args, **kwargs)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """The fake Slack Web API, served for the test."""
    with FakeSlack() as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    """A real WebClient pointed at the fake, retrying nothing itself (as in production)."""
    return WebClient(base_url=fake.url, token=DEFAULT_TOKEN, retry_handlers=[])


@pytest.fixture
def clock(now: datetime) -> Clock:
    """A clock starting at the fixed `now`."""
    return Clock(now)


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for an embedded setup under a temporary STEWARD_HOME, ignoring any .env."""
    return Settings(_env_file=None, steward_home=tmp_path / "home")


@pytest.fixture
def context(engine: Engine, client: WebClient, settings: Settings, clock: Clock, policy: Policy) -> WorkerContext:
    """A worker context on the test database, the fake Slack API, the default policy and the test clock."""
    return WorkerContext(engine=engine, client=client, settings=settings, now=clock, renderer=render, policy=policy)


@pytest.fixture
def ctx(context: WorkerContext) -> WorkerContext:
    """The worker context with a renderer that draws from the stored request and grant (modules with
    other needs define their own `ctx`)."""
    return replace(context, renderer=render_state)


def add(engine: Engine, now: datetime, method: OutboxMethod | str = OutboxMethod.POST, *, text: str = "hello",
        channel: str = "", user: str = "") -> int:
    """Commit one outbox row and return its id."""
    with transaction(engine) as session:
        return add_message(session=session, method=method, payload={"text": text}, now=now,
                           channel=channel, user=user).id


def load(engine: Engine, message_id: int) -> OutboxMessage:
    """The outbox row as stored now."""
    with transaction(engine) as session:
        return session.get(OutboxMessage, message_id)
