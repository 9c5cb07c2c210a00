"""Messages delivered from the outbox, rendered from stored state at delivery time."""

from __future__ import annotations

from typing import Any, Callable

from sqlmodel import Session

from workflows.models import Asset

from bot.ids import Action
from bot.views.assets import asset_line
from bot.views.common import Block, actions, button, section, user


def render_outbox(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """Turn an outbox payload into chat.postMessage arguments: text and blocks."""
    template = payload.get("template", "")
    renderer = _TEMPLATES.get(template)
    if renderer is None:
        raise ValueError(f"unknown outbox template {template!r}")
    asset = session.get(Asset, payload["asset_id"])
    if asset is None:
        return {"text": "An asset Steward told you about no longer exists."}
    text = renderer(asset, payload.get("actor", ""))
    blocks: list[Block] = [section(text), actions(button("View", Action.SHOW_ASSET, str(asset.id)))]
    return {"text": _fallback(text), "blocks": blocks}


def _registered(asset: Asset, actor: str) -> str:
    return f":white_check_mark: Registered {asset_line(asset)}"


def _registered_owner(asset: Asset, actor: str) -> str:
    return f":wave: {user(actor)} registered {asset_line(asset)} and named you its owner."


def _updated(asset: Asset, actor: str) -> str:
    return f":pencil2: Saved {asset_line(asset)}"


def _owner_changed(asset: Asset, actor: str) -> str:
    return f":wave: {user(actor)} made you the owner of {asset_line(asset)}."


def _classified_owner(asset: Asset, actor: str) -> str:
    return f":scales: {user(actor)} classified {asset_line(asset)}"


def _fallback(text: str) -> str:
    # Notifications show the plain text; drop the emoji codes that lead it.
    return text.split(" ", 1)[-1] if text.startswith(":") else text


_TEMPLATES: dict[str, Callable[[Asset, str], str]] = {
    "asset_registered": _registered,
    "asset_registered_owner": _registered_owner,
    "asset_updated": _updated,
    "asset_owner_changed": _owner_changed,
    "asset_classified_owner": _classified_owner,
}
