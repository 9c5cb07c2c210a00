"""The App Home tab: access requests waiting on me, what I must review, and my assets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflows.models import AccessRequest, Asset

from bot.ids import Action
from bot.views.access import pending_approval_blocks
from bot.views.assets import asset_line
from bot.views.common import Block, actions, button, context, date, divider, header, section

SHOWN = 15


def home_view(*, owned: list[Asset], due: list[Asset], now: datetime,
              approvals: list[AccessRequest] | None = None,
              approval_assets: dict[int, Asset] | None = None) -> dict[str, Any]:
    """The home tab for one user; `approvals` are the requests waiting on them, with their assets."""
    blocks: list[Block] = [
        header("Steward"),
        section("Know what AI you have, who can touch it, and whether anyone still looks after it."),
        actions(button("Register an asset", Action.REGISTER_OPEN, "home", style="primary")),
        divider(),
    ]
    if approvals is not None:
        blocks += pending_approval_blocks(approvals, approval_assets or {})
        blocks.append(divider())
    blocks.append(section(f"*Reviews due* ({len(due)})"))
    if due:
        for asset in due[:SHOWN]:
            overdue = asset.next_review_due is not None and asset.next_review_due < now
            when = ("overdue since " if overdue else "due ") + date(asset.next_review_due)
            blocks.append(section(f"{asset_line(asset)}\n{':rotating_light: ' if overdue else ''}{when}",
                                  accessory=button("View", Action.SHOW_ASSET, str(asset.id))))
    else:
        blocks.append(context("Nothing due in the next 14 days."))
    blocks += [divider(), section(f"*Your assets* ({len(owned)})")]
    if owned:
        for asset in owned[:SHOWN]:
            blocks.append(section(asset_line(asset), accessory=button("View", Action.SHOW_ASSET, str(asset.id))))
        if len(owned) > SHOWN:
            blocks.append(context(f"…and {len(owned) - SHOWN} more. `/steward mine` lists them all."))
    else:
        blocks.append(context("You own no assets yet. Register one with `/steward register`."))
    return {"type": "home", "blocks": blocks}
