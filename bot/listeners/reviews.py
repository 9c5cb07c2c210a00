"""Clicks on a review nudge: Still accurate, Update, Snooze 7 days, Add documentation and Retire.

Each option of a nudge row's overflow menu carries "<verb>:<asset id>"; the row's block id names the
nudge's outbox message, so the domain can redraw exactly that message. Every click is re-authorised
by workflows.reviews (owner or admin, never a retired asset).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from sqlmodel import Session, select

from bot.context import BotContext
from bot.forms import metadata, metadata_channel, metadata_id, read_metadata, record_number
from bot.ids import REVIEW_ROW_PREFIX, Action, Callback, ReviewVerb
from bot.listeners.common import (
    STALE_FORM,
    UNEXPECTED,
    actor_for,
    answer_at_once,
    change,
    channel_of,
    read,
    responder,
    tell,
)
from bot.listeners.modals import open_edit
from bot.views.common import escape
from bot.views.forms import asset_form_view
from bot.views.reviews import retire_confirm_view
from workflows import reviews
from workflows.enums import AssetKind, EdgeType, GrantStatus
from workflows.errors import DomainError, NotFound
from workflows.models import Grant

log = logging.getLogger("steward.bot")


def register(app: App, ctx: BotContext) -> None:
    """Attach the review listeners."""

    @app.action(Action.REVIEW_MENU)
    def review_menu(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        answer = responder(body, respond, client)

        def run() -> None:
            verb, asset_id = parse_choice(action)
            message_id = message_of(action)
            actor = actor_for(ctx, body["user"]["id"])
            now = ctx.clock()
            if verb is ReviewVerb.ACCURATE:
                change(ctx, lambda s: reviews.record_review(session=s, asset_id=asset_id, actor=actor, now=now,
                                                            policy=ctx.policy, message_id=message_id))
            elif verb is ReviewVerb.SNOOZE:
                change(ctx, lambda s: reviews.snooze_review(session=s, asset_id=asset_id, actor=actor, now=now,
                                                            policy=ctx.policy, message_id=message_id))
            elif verb is ReviewVerb.UPDATE:
                read(ctx, lambda s: reviews.ensure_reviewable(session=s, asset_id=asset_id, actor=actor,
                                                              policy=ctx.policy))
                open_edit(ctx, client, trigger_id=body["trigger_id"], asset_id=asset_id, actor=actor,
                          channel=channel_of(body), review_message=message_id or 0)
            elif verb is ReviewVerb.ADD_DOC:
                asset = read(ctx, lambda s: reviews.ensure_reviewable(session=s, asset_id=asset_id, actor=actor,
                                                                      policy=ctx.policy))
                view = asset_form_view(kind=AssetKind.DOCUMENTATION, owner_id=actor.user_id,
                                       lineage={EdgeType.DOCUMENTS: [asset]},
                                       metadata=metadata(kind=AssetKind.DOCUMENTATION.value,
                                                         channel=channel_of(body)))
                client.views_open(trigger_id=body["trigger_id"], view=view)
            else:
                def load(session: Session):
                    asset = reviews.ensure_reviewable(session=session, asset_id=asset_id, actor=actor,
                                                      policy=ctx.policy)
                    return asset, len(_active_grants(session, asset_id))
                asset, grants = read(ctx, load)
                view = retire_confirm_view(asset=asset, active_grants=grants,
                                           metadata=metadata(asset_id=asset_id, message_id=message_id,
                                                             channel=channel_of(body)))
                client.views_open(trigger_id=body["trigger_id"], view=view)

        answer_at_once(ctx, answer, run)

    @app.view(Callback.REVIEW_RETIRE)
    def submit_retire(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        ack()
        ctx.at_once(lambda: _retire(ctx, body, view, client))


def _retire(ctx: BotContext, body: dict[str, Any], view: dict[str, Any], client) -> None:
    """Retire an asset confirmed from a review nudge, after the ack; the outcome is told in the conversation."""
    meta = read_metadata(view)
    user_id, channel = body["user"]["id"], metadata_channel(meta)
    asset_id, message_id = metadata_id(meta, "asset_id"), metadata_id(meta, "message_id")
    try:
        if asset_id is None:
            raise NotFound(STALE_FORM)
        actor = actor_for(ctx, user_id)
        asset, ended = change(ctx, lambda s: reviews.retire_reviewed(
            session=s, asset_id=asset_id, actor=actor, now=ctx.clock(), policy=ctx.policy,
            message_id=message_id))
        grants = f" and ended {len(ended)} grant{'s' if len(ended) != 1 else ''}" if ended else ""
        tell(client, user_id=user_id, channel=channel,
             text=f":wastebasket: Retired `{escape(asset.slug)}`{grants}.")
    except DomainError as exc:
        tell(client, user_id=user_id, channel=channel, text=f":warning: {escape(str(exc))}")
    except Exception:
        log.exception("retiring from a review failed")
        tell(client, user_id=user_id, channel=channel, text=f":warning: {UNEXPECTED}")


def parse_choice(action: dict[str, Any]) -> tuple[ReviewVerb, int]:
    """The verb and asset id an overflow option carries; anything else is a stale or forged menu."""
    value = str((action.get("selected_option") or {}).get("value", ""))
    verb, _, asset_id = value.partition(":")
    number = record_number(asset_id)
    if verb not in ReviewVerb._value2member_map_ or number is None:
        raise NotFound("That menu no longer points at an asset.")
    return ReviewVerb(verb), number


def message_of(action: dict[str, Any]) -> int | None:
    """The nudge's outbox message id from the row's block id, if it is there."""
    block_id = str(action.get("block_id", ""))
    if not block_id.startswith(REVIEW_ROW_PREFIX):
        return None
    return record_number(block_id[len(REVIEW_ROW_PREFIX):].partition(":")[0])


def _active_grants(session: Session, asset_id: int) -> list[int]:
    return list(session.exec(select(Grant.id).where(Grant.asset_id == asset_id,
                                                    Grant.status == GrantStatus.ACTIVE)).all())
