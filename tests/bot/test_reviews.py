"""Clicks on a review nudge through signed requests: Still accurate, Update, Snooze, Add documentation, Retire."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.ids import Action, Callback
from tests.bot.conftest import outbox, rendered, submission
from tests.factories import (
    ADMIN,
    OTHER,
    OWNER,
    classify_system,
    log_actions,
    make_asset,
    make_grant,
    reload,
    retire,
)
from workflows import reviews
from workflows.db import transaction
from workflows.enums import AssetStatus, GrantStatus
from workflows.models import Grant, OutboxMessage
from workflows.outbox import OutboxMethod, mark_sent


@pytest.fixture
def due(harness, now):
    """An asset of OWNER's due in ten days, and the nudge (delivered) that lists it."""
    engine, policy = harness.ctx.engine, harness.ctx.policy
    asset = make_asset(engine, policy=policy, now=now - timedelta(days=80))
    with transaction(engine) as s:
        reviews.schedule_nudge(session=s, asset_id=asset.id, now=now, tz="UTC")
        [nudge_id] = reviews.due_nudge_ids(session=s, now=now)
        message = reviews.send_nudge(session=s, nudge_id=nudge_id, now=now, policy=policy)
        mark_sent(session=s, message=message, channel=f"D{OWNER}", ts="1.1", now=now)
        reviews.record_nudge_receipt(session=s, message=message)
        return asset, message.id


def click(harness, verb: str, asset_id: int, message_id: int, *, user: str = OWNER):
    """Choose one option of a nudge row's overflow menu."""
    payload = {
        "type": "block_actions", "user": {"id": user}, "team": {"id": "T0001"}, "api_app_id": "A0001",
        "trigger_id": "1.2.3", "response_url": harness.fake.response_url("nudge"),
        "container": {"type": "message", "message_ts": "1.1", "channel_id": f"D{OWNER}"},
        "channel": {"id": f"D{OWNER}"},
        "actions": [{"action_id": Action.REVIEW_MENU, "block_id": f"review:{message_id}:{asset_id}",
                     "type": "overflow", "selected_option": {"value": f"{verb}:{asset_id}"},
                     "action_ts": "1700000000.1"}],
    }
    response = harness.interact(payload)
    assert response.status == 200
    return response


def redraws(engine, message_id: int) -> list[OutboxMessage]:
    return [r for r in outbox(engine) if r.method == OutboxMethod.UPDATE and r.updates_id == message_id]


def test_the_nudge_offers_every_action_in_one_menu_per_asset(harness, due):
    asset, message_id = due
    [row] = outbox(harness.ctx.engine, template="review_nudge")
    content = rendered(harness.ctx.engine, row)
    [line] = [b for b in content["blocks"] if b.get("block_id") == f"review:{message_id}:{asset.id}"]
    values = [o["value"] for o in line["accessory"]["options"]]
    assert values == [f"{v}:{asset.id}" for v in ("accurate", "update", "snooze", "retire")]
    assert "due 2026-03-12 (in 10 days)" in line["text"]["text"]


def test_still_accurate_by_the_owner_records_the_review_and_redraws_the_nudge(harness, due, now):
    asset, message_id = due
    click(harness, "accurate", asset.id, message_id)

    stored = reload(harness.ctx.engine, asset)
    assert (stored.last_reviewed_at, stored.next_review_due) == (now, now + timedelta(days=90))
    [update] = redraws(harness.ctx.engine, message_id)
    assert update.id in harness.enqueued
    text = json.dumps(rendered(harness.ctx.engine, update))
    assert "Reviewed" in text and f"<@{OWNER}>" in text and "next review 2026-05-31" in text
    assert "asset.reviewed" in log_actions(harness.ctx.engine)


def test_an_admin_may_click_and_anyone_else_is_refused(harness, due, now):
    asset, message_id = due
    click(harness, "accurate", asset.id, message_id, user=OTHER)
    assert "Only the owner" in harness.last_reply_text()
    assert reload(harness.ctx.engine, asset).last_reviewed_at is None
    assert redraws(harness.ctx.engine, message_id) == []

    click(harness, "snooze", asset.id, message_id, user=ADMIN)
    assert reload(harness.ctx.engine, asset).next_review_due == asset.next_review_due + timedelta(days=7)


def test_a_retired_asset_is_refused(harness, due, now):
    asset, message_id = due
    retire(harness.ctx.engine, asset, policy=harness.ctx.policy, now=now)
    for verb in ("accurate", "snooze", "update", "retire"):
        click(harness, verb, asset.id, message_id)
        assert "retired" in harness.last_reply_text()
    assert not [c for c in harness.fake.calls if c.method == "views.open"]


def test_a_third_snooze_is_refused(harness, due):
    asset, message_id = due
    click(harness, "snooze", asset.id, message_id)
    click(harness, "snooze", asset.id, message_id)
    click(harness, "snooze", asset.id, message_id)
    assert "already snoozed 2 times" in harness.last_reply_text()
    assert reload(harness.ctx.engine, asset).next_review_due == asset.next_review_due + timedelta(days=14)
    assert log_actions(harness.ctx.engine).count("asset.review_snoozed") == 2
    text = json.dumps(rendered(harness.ctx.engine, redraws(harness.ctx.engine, message_id)[-1]))
    assert "Snoozed" in text


def test_retire_asks_first_then_ends_every_grant(harness, due, now):
    asset, message_id = due
    engine = harness.ctx.engine
    grant = make_grant(engine, asset, policy=harness.ctx.policy, now=now - timedelta(hours=1))
    click(harness, "retire", asset.id, message_id)
    view = harness.opened_view()
    assert view["callback_id"] == Callback.REVIEW_RETIRE and "1 active grant" in json.dumps(view)
    assert reload(engine, asset).status == AssetStatus.ACTIVE  # nothing happens until confirmed

    response = harness.interact(submission(view, {}))

    assert response.status == 200
    assert reload(engine, asset).status == AssetStatus.RETIRED
    with transaction(engine) as s:
        stored = s.get(Grant, grant.id)
        assert stored.status == GrantStatus.REVOKED
    actions = log_actions(engine)
    assert "asset.retired" in actions and "grant.revoked" in actions
    assert "Retired" in json.dumps(rendered(engine, redraws(engine, message_id)[-1]))


def test_update_opens_the_edit_form_and_saving_it_is_the_review(harness, due, now):
    asset, message_id = due
    click(harness, "update", asset.id, message_id)
    view = harness.opened_view()
    assert view["callback_id"] == Callback.EDIT

    shown = harness.submit(view, {"description": "Checked and still right."})

    assert shown["title"]["text"] == "Saved"
    stored = reload(harness.ctx.engine, asset)
    assert stored.description == "Checked and still right."
    assert (stored.last_reviewed_at, stored.next_review_due) == (now, now + timedelta(days=90))
    entries = log_actions(harness.ctx.engine)
    assert "asset.updated" in entries and "asset.reviewed" in entries


def test_a_documentation_gap_offers_add_documentation_prefilled(harness, now):
    engine, policy = harness.ctx.engine, harness.ctx.policy
    system = make_asset(engine, policy=policy, now=now - timedelta(days=80), kind="system", name="Screener")
    classify_system(engine, system, "high", policy=policy, now=now - timedelta(days=80))
    with transaction(engine) as s:
        reviews.schedule_nudge(session=s, asset_id=system.id, now=now, tz="UTC")
        [nudge_id] = reviews.due_nudge_ids(session=s, now=now)
        message_id = reviews.send_nudge(session=s, nudge_id=nudge_id, now=now, policy=policy).id
    [row] = outbox(engine, template="review_nudge")
    text = json.dumps(rendered(engine, row))
    assert "Missing documentation" in text and f"add_doc:{system.id}" in text

    click(harness, "add_doc", system.id, message_id)

    view = harness.opened_view()
    assert view["callback_id"] == Callback.REGISTER
    [edge] = [b for b in view["blocks"] if b.get("block_id") == "edge:documents"]
    assert [o["value"] for o in edge["element"]["initial_options"]] == [str(system.id)]
