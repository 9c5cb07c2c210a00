"""An owner registers a dataset; months later the scheduler finds its review due, the worker DMs the
owner a nudge, the owner picks **Still accurate**, and the review date moves a full interval ahead.

Everything runs as real processes: `steward serve` over HTTP, `steward worker` on real Redis, and
`steward scheduler --interval 1`, whose leader enqueues a sweep every second for the worker to run.
Time travel by moving deadlines: the processes read the wall clock, so instead of waiting months the
test moves the asset's `next_review_due` (and then the owner's `review_nudge.next_nudge_at`) with SQL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.ids import Action, ReviewVerb
from tests.e2e.conftest import Stack, wait_for
from tests.factories import OWNER
from workflows.enums import RiskTier
from workflows.policy import load_policy

pytestmark = pytest.mark.e2e


def review_menu(message: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The block and overflow menu of the first review row of a nudge, or None."""
    for block in message.get("blocks", []):
        accessory = block.get("accessory") or {}
        if accessory.get("action_id") == Action.REVIEW_MENU:
            return block, accessory
    return None


def choose(stack: Stack, message: dict[str, Any], value: str, *, user: str) -> None:
    """Pick an option of the review overflow menu on a DM, as Slack sends that click."""
    block, menu = review_menu(message)
    option = next(o for o in menu["options"] if o["value"] == value)
    channel, ts = message["channel"], message["ts"]
    shown = {k: v for k, v in message.items() if k != "channel"}
    payload = {
        "type": "block_actions", "user": {"id": user}, "team": {"id": "T0001"}, "api_app_id": "A0001",
        "trigger_id": "1700000000.1.trigger", "channel": {"id": channel},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "message": shown, "response_url": stack.fake.response_url(f"review-{user}"),
        "actions": [{"type": "overflow", "action_id": Action.REVIEW_MENU, "block_id": block["block_id"],
                     "selected_option": option, "action_ts": "1700000000.2"}],
    }
    response = stack.interact(payload)
    assert response.status_code == 200, response.text


def test_register_let_time_pass_nudge_still_accurate_and_the_date_moves(stack: Stack):
    stack.start_scheduler(interval=1)
    stack.register("dataset", {"name": "Churn events", "team": "Growth", "sensitivity": "internal",
                               "contains_personal_data": ["no"]}, user=OWNER)
    stack.wait_delivered()
    asset_id, tier, due = stack.sql("SELECT id, effective_tier, next_review_due FROM asset "
                                    "WHERE slug = 'churn-events'")[0]
    interval = load_policy(None).tier(RiskTier(tier) if tier else None).review_interval
    assert due - db_now(stack) > timedelta(days=30), "a new asset is not due for review for a long time"

    # Time passes: the review is due tomorrow, inside its reminder window. The scheduler's next sweep
    # schedules the owner's weekly nudge, at 09:00 on a weekday in their Slack timezone.
    stack.sql("UPDATE asset SET next_review_due = now() + interval '1 day' WHERE id = :id", id=asset_id)
    nudge_at = wait_for(lambda: stack.sql("SELECT next_nudge_at FROM review_nudge WHERE owner_id = :o "
                                          "AND next_nudge_at IS NOT NULL", o=OWNER),
                        what="the owner's nudge to be scheduled")[0][0]
    if nudge_at > db_now(stack) + timedelta(seconds=5):  # (unless the test runs at 09:00 London time)
        assert not [m for m in stack.dms(OWNER) if review_menu(m)], "no nudge before its 09:00"

    # And that 09:00 comes: the sweep sends the nudge, and the worker delivers it as a DM.
    stack.sql("UPDATE review_nudge SET next_nudge_at = now() - interval '1 minute' WHERE owner_id = :o", o=OWNER)
    nudge = wait_for(lambda: [m for m in stack.dms(OWNER) if review_menu(m)], what="the review nudge DM")[0]
    assert "churn-events" in json.dumps(nudge) or "Churn events" in json.dumps(nudge)
    values = [o["value"] for o in review_menu(nudge)[1]["options"]]
    assert f"{ReviewVerb.ACCURATE}:{asset_id}" in values
    wait_for(lambda: stack.sql("SELECT 1 FROM review_nudge WHERE owner_id = :o AND last_nudged_at IS NOT NULL",
                               o=OWNER), what="the nudge to be recorded as accepted by Slack")

    # Still accurate: the review is recorded, the date moves a full tier interval ahead, and the DM is
    # redrawn in place without the menu on that row.
    choose(stack, nudge, f"{ReviewVerb.ACCURATE}:{asset_id}", user=OWNER)
    moved = wait_for(lambda: stack.sql("SELECT next_review_due, last_reviewed_at FROM asset WHERE id = :id "
                                       "AND last_reviewed_at IS NOT NULL", id=asset_id), what="the review")[0]
    assert moved.next_review_due == moved.last_reviewed_at + interval
    assert interval - timedelta(minutes=5) < moved.next_review_due - db_now(stack) <= interval
    redrawn = wait_for(lambda: [m for m in stack.dms(OWNER) if m["ts"] == nudge["ts"] and "edited" in m],
                       what="the nudge to be redrawn")[0]
    assert review_menu(redrawn) is None, redrawn
    assert f"{moved.next_review_due:%Y-%m-%d}" in json.dumps(redrawn)
    stack.wait_delivered()
    # One nudge, one review in the decision log, and no Slack call failed.
    assert len([m for m in stack.dms(OWNER) if m["ts"] == nudge["ts"]]) == 1
    actions = [row.action for row in stack.sql("SELECT action FROM decision_log ORDER BY seq")]
    assert actions.count("review.nudged") == 1 and actions.count("asset.reviewed") == 1, actions
    assert not [c for c in stack.fake.calls if c.failed], [c for c in stack.fake.calls if c.failed]


def db_now(stack: Stack):
    """The database's clock (the same wall clock the subprocesses read)."""
    return stack.sql("SELECT now()")[0][0]
