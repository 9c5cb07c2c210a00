"""Recertification clicks (Keep, Revoke, Keep all), Take ownership and the user_change event, through
signed requests to the app."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot.ids import Action
from tests.bot.conftest import block_action, outbox, rendered
from tests.factories import ADMIN, OTHER, OWNER, log_actions, make_asset, make_grant
from workflows import audit, orphans, recertification
from workflows.db import transaction
from workflows.enums import GrantStatus
from workflows.models import Asset, Grant, OrphanedAsset, RecertCampaign, RecertItem
from workflows.outbox import OutboxMethod, mark_sent

PEOPLE = ("U0PEOPLE1", "U0PEOPLE2", "U0PEOPLE3")


@pytest.fixture
def campaign(harness, now):
    """An asset of OWNER's with three grants, and its delivered recertification list (started on request)."""
    engine, policy = harness.ctx.engine, harness.ctx.policy
    asset = make_asset(engine, policy=policy, now=now - timedelta(days=10))
    grants = [make_grant(engine, asset, policy=policy, now=now - timedelta(days=5), requester=p,
                         duration_hours=60 * 24) for p in PEOPLE]
    with transaction(engine) as s:
        audit.append_entry(session=s, actor=OWNER, action="grant.recertification_requested", subject_type="grant",
                           subject_id=grants[0].id, subject_slug=asset.slug, now=now, after={"asset": asset.id})
    with transaction(engine) as s:
        started = recertification.start_due(session=s, asset_id=asset.id, now=now, policy=policy)
    [message] = outbox(engine, template="recert_campaign")
    with transaction(engine) as s:
        mark_sent(session=s, message=s.get(type(message), message.id), channel=f"D{OWNER}", ts="2.2", now=now)
        items = list(s.exec(select(RecertItem).where(RecertItem.campaign_id == started.id)
                            .order_by(RecertItem.id)).all())
    return asset, started.id, message, items, grants


def click(harness, action: str, value: int, *, user: str = OWNER):
    response = harness.interact(block_action(action, str(value), user=user,
                                             response_url=harness.fake.response_url("recert")))
    assert response.status == 200
    return response


def redraws(engine, message_id: int):
    return [r for r in outbox(engine) if r.method == OutboxMethod.UPDATE and r.updates_id == message_id]


def test_the_list_names_every_grant_with_keep_and_revoke_and_keep_all(harness, campaign):
    _, campaign_id, message, items, _ = campaign
    content = rendered(harness.ctx.engine, message)
    text = str(content["blocks"])
    assert all(f"<@{p}>" in text for p in PEOPLE) and "read" in text and "expires" in text
    buttons = [(e["action_id"], e["value"]) for b in content["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    expected = [(a, str(i.id)) for i in items for a in (Action.RECERT_KEEP, Action.RECERT_REVOKE)]
    assert buttons == expected + [(Action.RECERT_KEEP_ALL, str(campaign_id))]


def test_keep_then_revoke_then_keep_all_by_the_owner(harness, campaign, now):
    engine = harness.ctx.engine
    _, campaign_id, message, items, grants = campaign
    click(harness, Action.RECERT_KEEP, items[0].id)
    assert len(redraws(engine, message.id)) == 1
    click(harness, Action.RECERT_REVOKE, items[1].id)
    with transaction(engine) as s:
        revoked = s.get(Grant, grants[1].id)
        assert (revoked.status, revoked.ended_by, revoked.end_reason) == (GrantStatus.REVOKED, OWNER,
                                                                         "not recertified by owner")
        assert s.get(RecertCampaign, campaign_id).completed_at is None
    click(harness, Action.RECERT_KEEP_ALL, campaign_id)
    with transaction(engine) as s:
        done = s.get(RecertCampaign, campaign_id)
        outcomes = [(i.outcome, i.decided_by) for i in s.exec(select(RecertItem).where(
            RecertItem.campaign_id == campaign_id).order_by(RecertItem.id)).all()]
        assert s.get(Grant, grants[2].id).status == GrantStatus.ACTIVE
    assert done.completed_at == now
    assert outcomes == [("keep", OWNER), ("revoke", OWNER), ("keep", OWNER)]
    assert len(redraws(engine, message.id)) == 3
    text = str(rendered(engine, message)["blocks"])
    assert "complete" in text and "Kept" in text and "Revoked" in text and "recert_keep" not in text
    assert log_actions(engine).count("grant.recertified") == 2 and "recertification.completed" in log_actions(engine)


def test_an_admin_may_decide(harness, campaign):
    _, _, _, items, _ = campaign
    click(harness, Action.RECERT_KEEP, items[0].id, user=ADMIN)
    with transaction(harness.ctx.engine) as s:
        assert s.get(RecertItem, items[0].id).decided_by == ADMIN


def test_someone_else_is_refused_and_nothing_changes(harness, campaign):
    engine = harness.ctx.engine
    _, campaign_id, message, items, _ = campaign
    before = log_actions(engine)
    for action, value in ((Action.RECERT_KEEP, items[0].id), (Action.RECERT_REVOKE, items[0].id),
                          (Action.RECERT_KEEP_ALL, campaign_id)):
        click(harness, action, value, user=OTHER)
        assert "Only the owner" in harness.last_reply_text()
    assert log_actions(engine) == before and redraws(engine, message.id) == []
    with transaction(engine) as s:
        assert [i.outcome for i in s.exec(select(RecertItem)).all()] == ["", "", ""]


def test_keep_on_an_already_revoked_grant_is_refused(harness, campaign):
    engine = harness.ctx.engine
    _, _, _, items, _ = campaign
    click(harness, Action.RECERT_REVOKE, items[0].id)
    click(harness, Action.RECERT_KEEP, items[0].id)
    assert "already revoked" in harness.last_reply_text()
    # Revoked elsewhere (not through this list) is refused too, with a clear reason.
    with transaction(engine) as s:
        from workflows import access
        from workflows.inventory import Actor
        access.revoke_grant(session=s, grant_id=items[1].grant_id, actor=Actor(OWNER), reason="moved team",
                            now=harness.ctx.clock(), policy=harness.ctx.policy)
    click(harness, Action.RECERT_KEEP, items[1].id)
    assert "already been revoked; it cannot be kept" in harness.last_reply_text()
    with transaction(engine) as s:
        assert s.get(RecertItem, items[1].id).outcome == ""


def test_a_forged_button_is_answered(harness, campaign):
    click(harness, Action.RECERT_KEEP, 9999)
    assert "No recertification item" in harness.last_reply_text()


# ---- orphans --------------------------------------------------------------------------------------


def test_a_deactivated_owner_flags_their_assets_and_someone_takes_one_over(harness, now):
    engine, policy = harness.ctx.engine, harness.ctx.policy
    asset = make_asset(engine, policy=policy, now=now)
    second = make_asset(engine, policy=policy, now=now, name="Churn labels")
    response = harness.event({"type": "user_change", "user": {"id": OWNER, "deleted": False}})
    assert response.status == 200
    with transaction(engine) as s:
        assert s.exec(select(OrphanedAsset)).all() == []
    harness.event({"type": "user_change", "user": {"id": OWNER, "deleted": True}})
    with transaction(engine) as s:
        flags = {f.asset_id: f.id for f in s.exec(select(OrphanedAsset)).all()}
    assert set(flags) == {asset.id, second.id}
    assert log_actions(engine).count("asset.orphaned") == 2

    # A bot cannot take it; a person can, once.
    click(harness, Action.TAKE_OWNERSHIP, flags[asset.id], user="U0BOTTY01")
    assert "not a bot" in harness.last_reply_text()
    click(harness, Action.TAKE_OWNERSHIP, flags[asset.id], user=OTHER)
    click(harness, Action.TAKE_OWNERSHIP, flags[asset.id], user=ADMIN)
    assert "already took ownership" in harness.last_reply_text()
    with transaction(engine) as s:
        assert s.get(Asset, asset.id).owner_id == OTHER
        assert not orphans.is_orphaned(session=s, asset_id=asset.id)
        assert orphans.is_orphaned(session=s, asset_id=second.id)
    assert log_actions(engine).count("asset.ownership_taken") == 1
