"""Saving a form after its ack: the modal says "Saving…" meanwhile, then shows the outcome, or the form
again holding what was entered, with each problem under its field (see bot/listeners/views.py)."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from workflows.errors import Conflict, DomainError, InvalidInput

from bot.context import BotContext
from bot.forms import metadata_channel, modal_errors, read_metadata
from bot.listeners.common import UNEXPECTED, change, tell
from bot.views.common import escape
from bot.views.forms import refilled_view, saving_view

log = logging.getLogger("steward.bot")


def ack_then_save(ctx: BotContext, ack, body: dict[str, Any], view: dict[str, Any], client, save, *,
                  doing: str, name: str = "", what: str, fallback: str) -> None:
    """Ack with "`doing` *name*…" in the modal, then `_save_and_show` on `ctx.after_ack`."""
    ack(response_action="update", view=saving_view(view, doing, name))
    ctx.after_ack(lambda: _save_and_show(ctx, body, view, client, save, what=what, fallback=fallback))


def _save_and_show(ctx: BotContext, body: dict[str, Any], view: dict[str, Any], client, save, *, what: str,
                   fallback: str) -> None:
    """Run `save` as one change, then turn the "Saving…" modal into the view it returns. Should the save
    fail, the modal shows the form again, holding what was entered, with each problem under its field.
    If the person has closed the modal meanwhile, a failure reaches them as a message instead."""
    try:
        outcome, failed = change(ctx, save), None
    except Exception as exc:
        errors = _form_errors(exc, view, fallback=fallback)
        failed = str(exc) if isinstance(exc, DomainError) else UNEXPECTED
        outcome = refilled_view(view, f"Not saved: {failed}", errors)
    try:
        client.views_update(view_id=view["id"], view=outcome)
        return
    except (SlackApiError, OSError) as exc:  # closed meanwhile, or Slack did not answer
        log.info("could not show the outcome of a form to %s (%s)", body["user"]["id"], type(exc).__name__)
    if failed is not None:
        details = " ".join(text for text in errors.values() if text != failed)
        tell(client, user_id=body["user"]["id"], channel=metadata_channel(read_metadata(view)),
             text=escape(f":warning: Your {what}: {failed} {details}".strip()))


def _form_errors(exc: Exception, view: dict[str, Any], *, fallback: str) -> dict[str, str]:
    """How a problem with a form reads as {block_id: error}; what names no block lands on `fallback`."""
    if isinstance(exc, InvalidInput):
        return modal_errors(exc.field_errors, view, fallback=fallback, message=str(exc))
    if isinstance(exc, Conflict):
        return modal_errors({exc.field or "": str(exc)}, view, fallback=fallback, message=str(exc))
    if isinstance(exc, DomainError):
        return {fallback: str(exc)}
    log.exception("saving a form failed", exc_info=exc)
    return {fallback: UNEXPECTED}
