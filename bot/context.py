"""What every listener needs, built once at start-up and passed in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine

from workers.clock import utc_now
from workers.directory import Directory
from workflows.policy import Policy
from workflows.settings import Settings

log = logging.getLogger("steward.bot")


class EnqueueDecision(Protocol):
    """Hand one approve/deny click to a worker (ids and the reason only); False if it could not be queued."""

    def __call__(self, request_id: int, approver_id: str, outcome: str, reason: str, channel: str) -> bool: ...


def members_from(directory: Directory, policy: Policy) -> Callable[[str], frozenset[str]]:
    """The policy's group membership as the access workflow asks for it: group name in, user ids out."""
    def members_of(group: str) -> frozenset[str]:
        return directory.members_of(policy, group)
    return members_of


def _sweep_provisions(job_ids: list[int]) -> None:
    log.debug("no provisioning queue is wired; the sweep sends jobs %s within a minute", job_ids)


def _no_decisions(request_id: int, approver_id: str, outcome: str, reason: str, channel: str) -> bool:
    log.error("no decision queue is wired; request %s was not decided", request_id)
    return False


def _run_now(work: Callable[[], None]) -> None:
    work()


@dataclass
class BotContext:
    """The engine, policy, Slack directory, delivery and decision hooks, and clock the listeners use."""

    settings: Settings
    engine: Engine
    policy: Policy
    directory: Directory
    enqueue_delivery: Callable[[list[int]], None]
    clock: Callable[[], datetime] = field(default=utc_now)
    # Who is in a policy group (the access workflow routes approvals with it); None means the
    # directory's answer for this policy.
    members_of: Callable[[str], frozenset[str]] | None = None
    # Approve and Deny clicks are decided by a worker; the listener only queues them.
    enqueue_decision: EnqueueDecision = field(default=_no_decisions)
    # Webhook provisioning jobs a change wrote (a revoke, a release) are sent by a worker. Without a
    # queue they are still sent: they are due in the database, and the sweep finds them.
    enqueue_provisioning: Callable[[list[int]], object] = field(default=_sweep_provisions)
    # Work after an ack that can wait a moment (a form's save, while its modal says "Saving…"; an answer through
    # a response URL): `steward serve` queues it behind the acks (bot.telemetry.QuietLane); by default, and in
    # tests, it runs at once.
    after_ack: Callable[[Callable[[], None]], object] = field(default=_run_now)
    # Work after an ack that must start at once (opening a modal, whose trigger_id expires 3 s after the click;
    # a change the person waits to see). Listeners return right after their ack, so this is where the rest of
    # their work goes: `steward serve` runs it on a few threads (bot.telemetry.AtOnce); by default, and in
    # tests, it runs before the listener returns.
    at_once: Callable[[Callable[[], None]], object] = field(default=_run_now)

    def __post_init__(self) -> None:
        if self.members_of is None:
            self.members_of = members_from(self.directory, self.policy)
