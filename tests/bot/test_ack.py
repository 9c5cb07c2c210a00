"""Listeners ack before they touch the database: with the database locked, Slack still gets its 200."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from tests.bot.conftest import Harness, as_in_production
from tests.factories import make_asset

COMMANDS = ["asset churn-events", "search churn", "mine", "classify churn-events", "edit churn-events",
            "request churn-events", "access"]


@contextmanager
def database_locked(engine):
    """Hold a lock that blocks every transaction Steward opens, until the block exits."""
    conn = engine.raw_connection()
    try:
        cursor = conn.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN EXCLUSIVE")
        else:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE asset IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def async_harness(harness) -> Harness:
    """The same app as in production: Bolt answers as soon as the listener acks; the rest runs on other threads."""
    return as_in_production(harness)


@pytest.mark.parametrize("text", COMMANDS)
def test_commands_ack_while_the_database_is_locked(async_harness, engine, bot_policy, now, text):
    make_asset(engine, policy=bot_policy, now=now, name="Churn events", kind="system")
    replied = threading.Event()
    async_harness.fake.on("views.open", lambda args: (replied.set(), {"ok": True, "view": {"id": "V1"}})[1])
    with database_locked(engine):
        response = async_harness.command(text)
        assert response.status == 200, "Slack got its ack although the database was locked"
        assert async_harness.replies() == [] and not replied.is_set(), "nothing can answer before the lock goes"
    # Once the database frees up, the listener finishes its work and answers.
    deadline = threading.Event()
    for _ in range(200):
        if async_harness.replies() or replied.is_set():
            break
        deadline.wait(0.05)
    assert async_harness.replies() or replied.is_set()
