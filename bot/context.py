"""What every listener needs, built once at start-up and passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from workflows.policy import Policy
from workflows.settings import Settings

from workers.directory import Directory


def utc_now() -> datetime:
    """The current time, aware and in UTC (the only clock the bot reads)."""
    return datetime.now(UTC)


@dataclass
class BotContext:
    """The engine, policy, Slack directory, delivery hook and clock the listeners use."""

    settings: Settings
    engine: Engine
    policy: Policy
    directory: Directory
    enqueue_delivery: Callable[[list[int]], None]
    clock: Callable[[], datetime] = field(default=utc_now)
