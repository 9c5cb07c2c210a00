"""Events: the App Home tab."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from workflows import inventory

from bot.context import BotContext
from bot.listeners.common import read
from bot.views.home import home_view


def register(app: App, ctx: BotContext) -> None:
    """Attach the event listeners."""

    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client) -> None:
        if event.get("tab", "home") != "home":
            return
        publish_home(ctx, client, event["user"])


def publish_home(ctx: BotContext, client, user_id: str) -> None:
    """Draw a user's home tab from current state."""
    now = ctx.clock()

    def load(session):
        return (inventory.list_owned(session=session, owner_id=user_id),
                inventory.reviews_due(session=session, owner_id=user_id, now=now))

    owned, due = read(ctx, load)
    client.views_publish(user_id=user_id, view=home_view(owned=owned, due=due, now=now))
