"""Block Kit for recertification (the owner's Keep / Revoke list and the escalation to security) and for
orphaned assets (the Take ownership message).

A campaign's list is split into pages of workflows.recertification.PAGE_SIZE grants, one message each:
two blocks per grant (its line, then Keep and Revoke) keep every page under Slack's 50-block limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.ids import Action
from bot.views.assets import asset_line
from bot.views.common import Block, actions, button, confirm_dialog, context, date, section, user
from workflows.models import Asset, Grant, OrphanedAsset, RecertCampaign, RecertItem

MAX_BLOCKS = 50
OUTCOME = {"keep": ":white_check_mark: Kept", "revoke": ":no_entry: Revoked"}


def grant_line(grant: Grant) -> str:
    """"@grantee · read · since 2026-01-01 · expires 2026-07-01"."""
    return (f"{user(grant.grantee_id)} · {grant.level.value} · since {date(grant.granted_at)} · "
            f"expires {date(grant.expires_at)}")


def campaign_message(*, campaign: RecertCampaign, asset: Asset, items: list[tuple[RecertItem, Grant]],
                     page: int = 0, pages: int = 1) -> dict[str, Any]:
    """One page of a campaign: each grant with Keep and Revoke (or its outcome), and Keep all."""
    undecided = [i for i, g in items if not i.outcome and g.status.value in ("active", "provisioning")]
    done = campaign.completed_at is not None
    part = f" (part {page + 1} of {pages})" if pages > 1 else ""
    if done:
        intro = f":white_check_mark: Recertification of {asset_line(asset)} is complete{part}."
    else:
        intro = (f":lock: {user(asset.owner_id)}, please recertify who has access to {asset_line(asset)}{part}. "
                 f"{len(undecided)} of {len(items)} grant{'s' if len(items) != 1 else ''} "
                 f"{'is' if len(undecided) == 1 else 'are'} waiting for your decision.")
    blocks: list[Block] = [section(intro)]
    start = page * _page_size()
    for item, grant in items[start:start + _page_size()]:
        if item.outcome:
            blocks.append(section(f"{OUTCOME.get(item.outcome, item.outcome)} by {user(item.decided_by)} "
                                  f"on {date(item.decided_at)}: {grant_line(grant)}"))
        elif grant.status.value not in ("active", "provisioning"):
            blocks.append(section(f":heavy_minus_sign: Already {grant.status.value}: {grant_line(grant)}"))
        else:
            blocks.append(section(grant_line(grant)))
            blocks.append(actions(
                button("Keep", Action.RECERT_KEEP, str(item.id), style="primary"),
                button("Revoke", Action.RECERT_REVOKE, str(item.id), style="danger",
                       confirm=confirm_dialog("Revoke access?", f"End {user(grant.grantee_id)}'s access now?",
                                              "Revoke")),
                block_id=f"recert:{item.id}"))
    if undecided and not done:
        blocks.append(actions(button("Keep all", Action.RECERT_KEEP_ALL, str(campaign.id)),
                              block_id=f"recert_all:{campaign.id}"))
    blocks.append(context("Whatever is left undecided for two weeks goes to the security team."))
    return {"text": _text(intro), "blocks": blocks[:MAX_BLOCKS]}


def escalation_message(*, campaign: RecertCampaign, asset: Asset, grants: list[Grant],
                       as_of: datetime) -> dict[str, Any]:
    """The security channel's escalation: the campaign's owner and its undecided grants."""
    days = (as_of - campaign.started_at).days
    intro = (f":rotating_light: The recertification of {asset_line(asset)} by {user(asset.owner_id)} has been "
             f"open {days} days. {len(grants)} grant{'s are' if len(grants) != 1 else ' is'} still undecided:")
    lines = [f"• {grant_line(g)}" for g in grants]
    blocks: list[Block] = [section(intro)]
    for start in range(0, len(lines), 10):
        blocks.append(section("\n".join(lines[start:start + 10])))
    return {"text": _text(intro), "blocks": blocks[:MAX_BLOCKS]}


def orphan_message(*, asset: Asset, orphan: OrphanedAsset) -> dict[str, Any]:
    """An asset whose owner is gone, with Take ownership (or who took it)."""
    why = "was deactivated" if orphan.reason == "deactivated" else "left the workspace"
    intro = f":bust_in_silhouette: {user(orphan.former_owner_id)}, the owner of {asset_line(asset)}, {why}."
    if not orphan.open:
        blocks = [section(intro), context(f"{user(orphan.taken_by)} took ownership on {date(orphan.taken_at)}.")]
    else:
        blocks = [section(intro + " Someone needs to own it: its reviews and access depend on an owner."),
                  actions(button("Take ownership", Action.TAKE_OWNERSHIP, str(orphan.id), style="primary"),
                          block_id=f"orphan:{orphan.id}")]
    return {"text": _text(intro), "blocks": blocks}


def _page_size() -> int:
    from workflows.recertification import PAGE_SIZE
    return PAGE_SIZE


def _text(text: str) -> str:
    return text.split(" ", 1)[-1] if text.startswith(":") else text
