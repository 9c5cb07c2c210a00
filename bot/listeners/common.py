"""Helpers the listeners share: who is acting, running one change, and answering errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from workflows.db import read_transaction, transaction
from workflows.errors import DomainError, NotAllowed, NotFound
from workflows.inventory import Actor
from workflows.outbox import added_message_ids
from workflows.provisioning import added_job_ids

from bot.context import BotContext
from bot.forms import metadata_channel, read_metadata, record_number
from bot.views.assets import not_found
from bot.views.common import escape, section

log = logging.getLogger("steward.bot")
T = TypeVar("T")
UNEXPECTED = "Steward hit an unexpected problem and has logged it. Nothing was changed; please try again."
STALE_FORM = "This form is out of date. Close it and start again."
SLACK_REFUSED = "Slack did not accept that just now, so nothing was changed. Please try again."
SLACK_SILENT = "Slack did not answer in time. Please try again."
DEACTIVATED = "Your Slack account is deactivated, so Steward takes no action from it."


def actor_for(ctx: BotContext, user_id: str) -> Actor:
    """The acting user with the policy groups they belong to; a deactivated account is refused (NotAllowed),
    even where the policy still names it."""
    if deactivated(ctx, user_id):
        raise NotAllowed(DEACTIVATED)
    return Actor(user_id=user_id, groups=ctx.directory.groups_of(user_id, ctx.policy))


def deactivated(ctx: BotContext, user_id: str) -> bool:
    """Whether Slack reports this account deactivated (users.info, cached by the directory)."""
    try:
        person = ctx.directory.user(user_id)
    except (SlackApiError, OSError) as exc:
        # Slack sends no requests for deactivated accounts, so this is a second line: when Slack cannot
        # answer right now (an error, or no answer in time), act rather than refuse everyone.
        why = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log.warning("could not look up %s in Slack (%s); treating the account as active", user_id, why)
        return False
    return person is not None and person.deleted


def read(ctx: BotContext, fn: Callable[[Session], T]) -> T:
    """Run a read in its own short transaction (on SQLite, one that never waits for writers)."""
    with read_transaction(ctx.engine) as session:
        return fn(session)


def change(ctx: BotContext, fn: Callable[[Session], T]) -> T:
    """Run one state change in one transaction, then hand its outbox rows and provisioning jobs to the workers."""
    with transaction(ctx.engine) as session:
        result = fn(session)
        queued, jobs = added_message_ids(session), added_job_ids(session)
    if queued:
        ctx.enqueue_delivery(queued)
    if jobs:
        ctx.enqueue_provisioning(jobs)
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
    except SlackApiError as exc:
        # Slack refusing a call (an expired trigger_id, a view it rejects) is Slack's answer, not a bug.
        log.warning("Slack refused %s: %s", exc.response.api_url.rsplit("/", 1)[-1], exc.response.get("error"))
        ephemeral(respond, [section(SLACK_REFUSED)], SLACK_REFUSED)
    except OSError as exc:
        # No answer from Slack in time (or no connection): the person can simply try again.
        log.warning("Slack did not answer: %s", type(exc).__name__)
        ephemeral(respond, [section(SLACK_SILENT)], SLACK_SILENT)
    except Exception:
        log.exception("listener failed")
        respond(response_type="ephemeral", replace_original=False, text=UNEXPECTED)


def answer_at_once(ctx: BotContext, respond: Callable[..., Any], fn: Callable[[], None]) -> None:
    """Run `fn` as `answer_errors` does, on `ctx.at_once`: started now, after the listener has acked."""
    ctx.at_once(lambda: answer_errors(respond, fn))


def answer_after_acks(ctx: BotContext, respond: Callable[..., Any], fn: Callable[[], None]) -> None:
    """Run `fn` as `answer_errors` does, on `ctx.after_ack`: behind the acks of requests still arriving.

    Only for work that answers through the response URL, which Slack keeps valid for 30 minutes. Work that
    opens a modal must run at once: its trigger_id expires 3 s after the person acted.
    """
    ctx.after_ack(lambda: answer_errors(respond, fn))


def ephemeral(respond: Callable[..., Any], blocks: list[dict[str, Any]], text: str) -> None:
    """Answer only the person who asked (`text` is the notification fallback, so it is escaped too)."""
    respond(response_type="ephemeral", replace_original=False, text=escape(text), blocks=blocks)


def record_id(action: dict[str, Any], noun: str) -> int:
    """The record id a button carries; anything else is answered as a stale or forged button."""
    number = record_number(action.get("value"))
    if number is None:
        raise NotFound(f"That button no longer points at {noun}.")
    return number


def in_modal(body: dict[str, Any]) -> bool:
    """Whether the click came from inside a modal (so a new modal is pushed, not opened)."""
    return body.get("container", {}).get("type") == "view" and body.get("view", {}).get("type") == "modal"


def channel_of(body: dict[str, Any]) -> str:
    """The conversation a click came from, or the one a modal was opened from; "" for App Home."""
    return (body.get("channel") or {}).get("id", "") or metadata_channel(read_metadata(body.get("view") or {}))


def responder(body: dict[str, Any], respond, client) -> Callable[..., Any]:
    """Where to answer a click: its response_url when there is one, else a DM from the bot."""
    if body.get("response_url"):
        return respond
    user_id = body["user"]["id"]

    def dm(**kwargs: Any) -> None:
        kwargs.pop("response_type", None)
        kwargs.pop("replace_original", None)
        channel = client.conversations_open(users=user_id)["channel"]["id"]
        client.chat_postMessage(channel=channel, **kwargs)
    return dm


def tell(client, *, user_id: str, channel: str, text: str) -> None:
    """Tell one person something after the ack (no response_url at hand): ephemerally where they were,
    else in a DM. `text` is mrkdwn the caller has escaped."""
    blocks = [section(text)]
    if channel:
        try:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text, blocks=blocks)
            return
        except (SlackApiError, OSError):  # refused, or no answer in time: the DM is a second chance
            log.info("could not answer %s in %s; sending a DM instead", user_id, channel)
    dm = client.conversations_open(users=user_id)["channel"]["id"]
    client.chat_postMessage(channel=dm, text=text, blocks=blocks)
