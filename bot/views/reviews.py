"""Block Kit for reviews: the owner's weekly nudge, the overdue escalation, and Retire's confirmation.

A nudge lists up to MAX_ROWS assets as one compact section each, with an overflow menu holding the
actions (Still accurate, Update, Snooze 7 days, Add documentation, Retire), so even a long list stays one
message under Slack's 50-block limit; the rest are named as "and N more".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.ids import REVIEW_ROW_PREFIX, Action, Callback, ReviewVerb
from bot.views.assets import asset_line
from bot.views.common import Block, context, escape, mrkdwn, option, plain, section, user
from workflows.enums import DocType
from workflows.models import Asset, AssetReview

MAX_BLOCKS = 50
MAX_ROWS = MAX_BLOCKS - 3  # the intro, the "and N more" line and the footer
DONE = {"reviewed": ":white_check_mark: Reviewed", "snoozed": ":zzz: Snoozed", "retired": ":wastebasket: Retired"}


@dataclass
class ReviewRow:
    """One asset of a nudge, as it stands now."""

    asset: Asset
    state: AssetReview | None = None
    missing_docs: list[DocType] = field(default_factory=list)


def due_phrase(due: datetime | None, as_of: datetime) -> str:
    """"due 2026-06-01 (in 5 days)" or "overdue by 3 days", as of the nudge."""
    if due is None:
        return "no review scheduled"
    days = (due.date() - as_of.date()).days
    if days < 0:
        return f"*overdue by {-days} day{'s' if days != -1 else ''}* (was due {due:%Y-%m-%d})"
    if days == 0:
        return f"due today ({due:%Y-%m-%d})"
    return f"due {due:%Y-%m-%d} (in {days} day{'s' if days != 1 else ''})"


def nudge_message(*, owner_id: str, rows: list[ReviewRow], message_id: int, as_of: datetime) -> dict[str, Any]:
    """The weekly nudge: every review of the owner's that is due soon or overdue, each with its actions."""
    intro = (f":clipboard: {user(owner_id)}, {len(rows)} of your AI assets "
             f"{'needs' if len(rows) == 1 else 'need'} a review. Is each record still accurate?")
    blocks: list[Block] = [section(intro)]
    for row in rows[:MAX_ROWS]:
        blocks.append(_row(row, message_id=message_id, as_of=as_of))
    if len(rows) > MAX_ROWS:
        blocks.append(context(f"…and {len(rows) - MAX_ROWS} more. See them all with `/steward mine`."))
    blocks.append(context("Use each asset's ⋯ menu: Still accurate, Update, Snooze 7 days (twice at most) "
                          "or Retire."))
    return {"text": f"{len(rows)} of your AI assets need a review", "blocks": blocks}


def _row(row: ReviewRow, *, message_id: int, as_of: datetime) -> Block:
    asset, state = row.asset, row.state
    block_id = f"{REVIEW_ROW_PREFIX}{message_id}:{asset.id}"
    done = state.last_action if state and state.last_action_at and state.last_action_at >= as_of else ""
    if asset.status.value == "retired":
        done = "retired"
    if done:
        by = f" by {user(state.last_action_by)}" if state and state.last_action_by else ""
        when = f" · next review {asset.next_review_due:%Y-%m-%d}" if asset.next_review_due else ""
        return section(f"{DONE.get(done, done)}{by}: {asset_line(asset)}{when}", block_id=block_id)
    text = f"{asset_line(asset)}\n{due_phrase(asset.next_review_due, as_of)}"
    if row.missing_docs:
        text += "\n:page_facing_up: Missing documentation: " + ", ".join(escape(d.label) for d in row.missing_docs)
    verbs = [("Still accurate", ReviewVerb.ACCURATE), ("Update", ReviewVerb.UPDATE),
             ("Snooze 7 days", ReviewVerb.SNOOZE)]
    if row.missing_docs:
        verbs.append(("Add documentation", ReviewVerb.ADD_DOC))
    verbs.append(("Retire…", ReviewVerb.RETIRE))
    menu = {"type": "overflow", "action_id": Action.REVIEW_MENU,
            "options": [option(label, f"{verb.value}:{asset.id}") for label, verb in verbs]}
    return section(text, accessory=menu, block_id=block_id)


def overdue_message(*, rows: list[tuple[Asset, int]], more: int = 0) -> dict[str, Any]:
    """The governance channel's escalation: overdue assets, their owners and how long each is overdue."""
    lines = [f"• {asset_line(asset)} · owner {user(asset.owner_id)} · *{days} days overdue*"
             for asset, days in rows]
    intro = (f":rotating_light: {len(rows) + more} AI asset review{'s are' if len(rows) + more != 1 else ' is'} "
             "overdue by two weeks or more. Please follow up with the owners.")
    blocks: list[Block] = [section(intro)]
    # Several lines per section keep a long list within the block limit and each text under 3000 characters.
    for start in range(0, len(lines), 10):
        blocks.append(section("\n".join(lines[start:start + 10])))
    if more:
        blocks.append(context(f"…and {more} more."))
    return {"text": intro, "blocks": blocks[:MAX_BLOCKS]}


def retire_confirm_view(*, asset: Asset, active_grants: int, metadata: str) -> dict[str, Any]:
    """The confirmation Retire asks for: it ends every grant on the asset."""
    grants = (f" Its {active_grants} active grant{'s' if active_grants != 1 else ''} will end now."
              if active_grants else "")
    text = (f"Retire {asset_line(asset)}?\nIt stays in the inventory and the decision log, but is no longer "
            f"reviewed or requestable.{grants}")
    return {"type": "modal", "callback_id": Callback.REVIEW_RETIRE, "title": plain("Retire asset", 24),
            "submit": plain("Retire", 24), "close": plain("Cancel", 24), "private_metadata": metadata,
            "blocks": [{"type": "section", "text": mrkdwn(text)}]}
