"""Helpers the listeners share: who is acting, running one change, and answering errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlmodel import Session

from workflows.db import transaction
from workflows.errors import DomainError, NotFound
from workflows.inventory import Actor
from workflows.outbox import added_message_ids

from bot.context import BotContext
from bot.views.assets import not_found
from bot.views.common import escape, section

log = logging.getLogger("steward.bot")
T = TypeVar("T")
UNEXPECTED = "Steward hit an unexpected problem and has logged it. Nothing was changed; please try again."


def actor_for(ctx: BotContext, user_id: str) -> Actor:
    """The acting user with the policy groups they belong to."""
    return Actor(user_id=user_id, groups=ctx.directory.groups_of(user_id, ctx.policy))


def read(ctx: BotContext, fn: Callable[[Session], T]) -> T:
    """Run a read in its own short transaction."""
    with transaction(ctx.engine) as session:
        return fn(session)


def change(ctx: BotContext, fn: Callable[[Session], T]) -> T:
    """Run one state change in one transaction, then hand its outbox rows to the workers."""
    with transaction(ctx.engine) as session:
        result = fn(session)
        queued = added_message_ids(session)
    if queued:
        ctx.enqueue_delivery(queued)
    return result


def error_blocks(exc: DomainError) -> list[dict[str, Any]]:
    """How a domain error reads in an ephemeral message."""
    if isinstance(exc, NotFound):
        return not_found(str(exc), exc.suggestions)
    return [section(f":warning: {escape(str(exc))}")]


def answer_errors(respond: Callable[..., Any], fn: Callable[[], None]) -> None:
    """Run `fn`; turn domain errors (and surprises) into an ephemeral reply instead of a stack trace."""
    try:
        fn()
    except DomainError as exc:
        blocks = error_blocks(exc)
        respond(response_type="ephemeral", replace_original=False, text=escape(str(exc)), blocks=blocks)
    except Exception:
        log.exception("listener failed")
        respond(response_type="ephemeral", replace_original=False, text=UNEXPECTED)


def ephemeral(respond: Callable[..., Any], blocks: list[dict[str, Any]], text: str) -> None:
    """Answer only the person who asked (`text` is the notification fallback, so it is escaped too)."""
    respond(response_type="ephemeral", replace_original=False, text=escape(text), blocks=blocks)
