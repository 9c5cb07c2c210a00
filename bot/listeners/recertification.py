"""Recertification clicks (Keep, Revoke, Keep all), Take ownership of an orphaned asset, and the
`user_change` event that flags a deactivated owner's assets.

Buttons carry only a record id; workflows re-authorise every click (owner or admin for recertification,
any person for Take ownership) and redraw the message through the outbox.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from bot.context import BotContext
from bot.ids import Action
from bot.listeners.common import actor_for, answer_at_once, change, record_id, responder
from workflows import orphans, recertification
from workflows.errors import NotAllowed

log = logging.getLogger("steward.bot")


def register(app: App, ctx: BotContext) -> None:
    """Attach the recertification and orphan listeners."""

    def decide(verb):
        def listener(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
            ack()

            def run() -> None:
                actor = actor_for(ctx, body["user"]["id"])
                now = ctx.clock()
                if verb is Action.RECERT_KEEP_ALL:
                    campaign_id = record_id(action, "a recertification")
                    change(ctx, lambda s: recertification.keep_all(session=s, campaign_id=campaign_id, actor=actor,
                                                                   now=now, policy=ctx.policy))
                    return
                item_id = record_id(action, "a grant to recertify")
                decide_item = recertification.keep if verb is Action.RECERT_KEEP else recertification.revoke
                change(ctx, lambda s: decide_item(session=s, item_id=item_id, actor=actor, now=now,
                                                  policy=ctx.policy))

            answer_at_once(ctx, responder(body, respond, client), run)
        return listener

    for verb in (Action.RECERT_KEEP, Action.RECERT_REVOKE, Action.RECERT_KEEP_ALL):
        app.action(verb)(decide(verb))

    @app.action(Action.TAKE_OWNERSHIP)
    def take_ownership(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        def run() -> None:
            user_id = body["user"]["id"]
            orphan_id = record_id(action, "an orphaned asset")
            # Only a person who still works here may own an asset: no bots, no deactivated accounts.
            problem = ctx.directory.owner_problem(user_id)
            if problem:
                raise NotAllowed(problem)
            actor = actor_for(ctx, user_id)
            change(ctx, lambda s: orphans.take_ownership(session=s, orphan_id=orphan_id, actor=actor,
                                                         now=ctx.clock()))

        answer_at_once(ctx, responder(body, respond, client), run)

    @app.event("user_change")
    def user_changed(event: dict[str, Any]) -> None:
        person = event.get("user") or {}
        if not person.get("deleted") or not person.get("id"):
            return

        def flag() -> None:
            flagged = change(ctx, lambda s: orphans.flag_orphans(session=s, owner_id=person["id"],
                                                                 reason=orphans.DEACTIVATED, now=ctx.clock(),
                                                                 policy=ctx.policy))
            if flagged:
                log.info("flagged %d assets of deactivated owner %s", len(flagged), person["id"])

        ctx.at_once(flag)
