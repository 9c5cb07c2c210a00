"""Events: the App Home tab."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from sqlmodel import col, select

from workflows import inventory
from workflows.access import pending_approvals
from workflows.models import Asset

from bot.context import BotContext
from bot.listeners.common import read
from bot.views.home import home_view


def register(app: App, ctx: BotContext) -> None:
    """Attach the event listeners."""

    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client) -> None:
        if event.get("tab", "home") != "home":
            return
        ctx.at_once(lambda: publish_home(ctx, client, event["user"]))


def publish_home(ctx: BotContext, client, user_id: str) -> None:
    """Draw a user's home tab from current state."""
    now = ctx.clock()

    def load(session):
        approvals = pending_approvals(session=session, user_id=user_id)
        ids = {r.asset_id for r in approvals}
        assets = {a.id: a for a in session.exec(select(Asset).where(col(Asset.id).in_(ids))).all()} if ids else {}
        return (inventory.list_owned(session=session, owner_id=user_id),
                inventory.reviews_due(session=session, owner_id=user_id, now=now), approvals, assets)

    owned, due, approvals, assets = read(ctx, load)
    client.views_publish(user_id=user_id, view=home_view(owned=owned, due=due, now=now, approvals=approvals,
                                                         approval_assets=assets))
