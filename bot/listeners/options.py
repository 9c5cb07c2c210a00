"""Options for the lineage pickers (external selects), filtered to the kinds each edge allows."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import App

from workflows import inventory
from workflows.enums import AssetKind, EdgeType
from workflows.lineage import FORM_EDGES

from bot.context import BotContext
from bot.forms import metadata_id, read_metadata
from bot.ids import PICKER_PREFIX
from bot.listeners.common import log, read
from bot.views.forms import asset_option

MAX_OPTIONS = 100


def register(app: App, ctx: BotContext) -> None:
    """Attach the options listener for every lineage picker."""

    @app.options(re.compile(f"^{re.escape(PICKER_PREFIX)}"))
    def pick_assets(ack, body: dict[str, Any]) -> None:
        try:
            ack(options=_options(ctx, body))
        except Exception:
            log.exception("loading picker options failed")
            ack(options=[])


def _options(ctx: BotContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    meta = read_metadata(body.get("view") or {})
    try:
        kind = AssetKind(meta.get("kind", ""))
        edge_type = EdgeType(body["action_id"].removeprefix(PICKER_PREFIX))
    except (ValueError, KeyError):
        return []
    kinds = FORM_EDGES[kind].get(edge_type)
    if not kinds:
        return []
    exclude = metadata_id(meta, "asset_id")
    assets = read(ctx, lambda s: inventory.pick_assets(session=s, text=body.get("value", ""), kinds=kinds,
                                                       exclude_id=exclude, limit=MAX_OPTIONS))
    return [asset_option(a) for a in assets]
