"""Recertification and orphaned assets as services on a real database: campaigns, decisions, refusals,
escalation, impact-analysis requests, paging, and Take ownership."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from sqlmodel import select, update

from bot.views.messages import render_outbox
from tests.factories import ADMIN, OTHER, OWNER, chain_ok, log_actions, log_entries, make_asset, make_grant
from workflows import audit, orphans, recert_schedule, recertification
from workflows.db import transaction
from workflows.enums import GrantStatus, RiskTier
from workflows.errors import Conflict, NotAllowed
from workflows.inventory import Actor
from workflows.models import Asset, Grant, OrphanedAsset, OutboxMessage, RecertCampaign, RecertItem
from workflows.outbox import OutboxMethod
from workflows.policy import Policy, default_policy_text, parse_policy

SEC_CHANNEL, GOV_CHANNEL = "C0SECURE1", "C0GOVERN1"
YEAR_HOURS = 365 * 24


@pytest.fixture
def rpolicy() -> Policy:
    """The default policy, owners approving alone, year-long grants, security and governance channels."""
    data = yaml.safe_load(default_policy_text())
    data["channels"].update(security=SEC_CHANNEL, governance=GOV_CHANNEL)
    data["groups"]["admins"] = [ADMIN]
    data["grants"]["duration_choices_days"] = [1, 30, 365, 400]
    for tier in ("minimal", "limited", "high"):
        data["tiers"][tier].update(approvers=["owner"], max_grant_days=400)
    return parse_policy(yaml.safe_dump(data))


def grants_for(engine, asset, policy, now, people) -> list[Grant]:
    return [make_grant(engine, asset, policy=policy, now=now, requester=p, duration_hours=YEAR_HOURS)
            for p in people]


def start(engine, asset_id, policy, now):
    with transaction(engine) as s:
        return recertification.start_due(session=s, asset_id=asset_id, now=now, policy=policy)


def items_of(engine, campaign_id) -> list[RecertItem]:
    with transaction(engine) as s:
        return list(s.exec(select(RecertItem).where(RecertItem.campaign_id == campaign_id)
                           .order_by(RecertItem.id)).all())


def campaign(engine, campaign_id) -> RecertCampaign:
    with transaction(engine) as s:
        return s.get(RecertCampaign, campaign_id)


# ---- pure: the policy's intervals -----------------------------------------------------------------


@pytest.mark.parametrize(("tier", "days"), [(RiskTier.HIGH, 90), (RiskTier.LIMITED, 180), (RiskTier.MINIMAL, 365),
                                            (RiskTier.PROHIBITED, 30), (None, 90)])
def test_recertification_intervals_default_per_tier(tier, days):
    policy = parse_policy(default_policy_text())
    assert policy.recertify_interval(tier) == timedelta(days=days)


def test_a_tier_can_set_its_own_recertification_interval():
    data = yaml.safe_load(default_policy_text())
    data["tiers"]["high"]["recertify_interval_days"] = 60
    policy = parse_policy(yaml.safe_dump(data))
    assert policy.recertify_interval(RiskTier.HIGH) == timedelta(days=60)
    assert policy.recertify_interval(None) == timedelta(days=60)


# ---- campaigns ------------------------------------------------------------------------------------


def test_the_sweep_schedules_an_asset_from_its_first_grant_and_starts_when_due(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now)  # a dataset: unclassified, so the shortest (90 days)
    grants_for(engine, asset, rpolicy, now, [OTHER])
    month = now + timedelta(days=30)  # the shortest interval any tier may have (prohibited)
    with transaction(engine) as s:
        provisional = recertification.schedule_of(session=s, asset_id=asset.id)
        assert (provisional.next_due_at, provisional.provisional) == (month, True)  # from the grant going live
        assert recertification.assets_due(session=s, now=month - timedelta(minutes=1)) == []
        assert recertification.assets_due(session=s, now=month) == [asset.id]  # to settle
    assert start(engine, asset.id, rpolicy, month) is None
    with transaction(engine) as s:
        settled = recertification.schedule_of(session=s, asset_id=asset.id)
        assert (settled.next_due_at, settled.provisional) == (now + timedelta(days=90), False)
        assert recertification.assets_due(session=s, now=now + timedelta(days=89)) == []
        assert recertification.assets_due(session=s, now=now + timedelta(days=90)) == [asset.id]
    started = start(engine, asset.id, rpolicy, now + timedelta(days=90))
    assert started is not None and started.period == now + timedelta(days=90)
    with transaction(engine) as s:
        assert recertification.schedule_of(session=s, asset_id=asset.id).next_due_at == now + timedelta(days=180)
        [dm] = s.exec(select(OutboxMessage).where(OutboxMessage.topic == f"recert:{started.id}")).all()
        assert (dm.method, dm.user) == (OutboxMethod.DM, OWNER)
    assert "recertification.started" in log_actions(engine)


def test_a_later_grant_keeps_the_schedule_and_one_after_all_ended_schedules_again(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now)
    grants_for(engine, asset, rpolicy, now, [OTHER])
    assert start(engine, asset.id, rpolicy, now + timedelta(days=30)) is None  # settled: due in 90 days
    grants_for(engine, asset, rpolicy, now + timedelta(days=40), ["U0THIRD1"])
    with transaction(engine) as s:
        assert recertification.schedule_of(session=s, asset_id=asset.id).next_due_at == now + timedelta(days=90)
        s.exec(update(Grant).values(status=GrantStatus.EXPIRED))
    assert start(engine, asset.id, rpolicy, now + timedelta(days=90)) is None  # nothing live: unscheduled
    with transaction(engine) as s:
        assert recertification.schedule_of(session=s, asset_id=asset.id) is None
    later = now + timedelta(days=100)
    grants_for(engine, asset, rpolicy, later, [OTHER])
    with transaction(engine) as s:
        assert recertification.schedule_of(session=s, asset_id=asset.id).next_due_at == later + timedelta(days=30)
        assert recertification.assets_due(session=s, now=later) == []


def test_an_asset_without_grants_is_never_due(engine, rpolicy, now):
    make_asset(engine, policy=rpolicy, now=now)
    with transaction(engine) as s:
        assert recertification.assets_due(session=s, now=now + timedelta(days=400)) == []


def test_keep_and_revoke_record_who_and_when_and_complete_the_campaign(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now - timedelta(days=100))
    kept, revoked = grants_for(engine, asset, rpolicy, now - timedelta(days=90), [OTHER, "U0THIRD1"])
    started = start(engine, asset.id, rpolicy, now)
    first, second = items_of(engine, started.id)

    later = now + timedelta(hours=2)
    with transaction(engine) as s:
        recertification.keep(session=s, item_id=first.id, actor=Actor(OWNER), now=later, policy=rpolicy)
    assert campaign(engine, started.id).completed_at is None
    with transaction(engine) as s:
        recertification.revoke(session=s, item_id=second.id, actor=Actor(ADMIN, frozenset({"admins"})), now=later,
                               policy=rpolicy)
        assert s.get(Grant, revoked.id).status == GrantStatus.REVOKED
        assert s.get(Grant, revoked.id).end_reason == "not recertified by owner"
        assert s.get(Grant, kept.id).status == GrantStatus.ACTIVE
    done = campaign(engine, started.id)
    assert done.completed_at == later and done.escalate_at is None
    entries = {e.action: e for e in log_entries(engine)}
    assert entries["grant.recertified"].actor == OWNER and entries["grant.recertified"].subject_id == kept.id
    assert entries["grant.revoked"].actor == ADMIN
    decisions = entries["recertification.completed"].after["decisions"]
    assert [(d["grant"], d["outcome"], d["by"]) for d in decisions] == [(kept.id, "keep", OWNER),
                                                                        (revoked.id, "revoke", ADMIN)]
    assert all(d["at"] for d in decisions)
    assert chain_ok(engine)


def test_refusals_change_nothing(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now - timedelta(days=100))
    grants_for(engine, asset, rpolicy, now - timedelta(days=90), [OTHER, "U0THIRD1"])
    started = start(engine, asset.id, rpolicy, now)
    first, second = items_of(engine, started.id)
    before = len(log_actions(engine))

    with pytest.raises(NotAllowed, match="owner"), transaction(engine) as s:
        recertification.keep(session=s, item_id=first.id, actor=Actor(OTHER), now=now, policy=rpolicy)
    with pytest.raises(NotAllowed), transaction(engine) as s:
        recertification.keep_all(session=s, campaign_id=started.id, actor=Actor(OTHER), now=now, policy=rpolicy)
    # A grant revoked elsewhere (from the asset card) cannot be kept.
    with transaction(engine) as s:
        from workflows import access
        access.revoke_grant(session=s, grant_id=second.grant_id, actor=Actor(OWNER), reason="left the team",
                            now=now, policy=rpolicy)
    before = len(log_actions(engine))
    with pytest.raises(Conflict, match="already been revoked; it cannot be kept"), transaction(engine) as s:
        recertification.keep(session=s, item_id=second.id, actor=Actor(OWNER), now=now, policy=rpolicy)
    with transaction(engine) as s:
        recertification.keep(session=s, item_id=first.id, actor=Actor(OWNER), now=now, policy=rpolicy)
    with pytest.raises(Conflict, match="already kept by"), transaction(engine) as s:
        recertification.revoke(session=s, item_id=first.id, actor=Actor(OWNER), now=now, policy=rpolicy)
    assert [i.outcome for i in items_of(engine, started.id)] == ["keep", ""]
    # The revoked grant needs no decision: keeping the other one completed the campaign.
    assert campaign(engine, started.id).completed_at == now
    assert log_actions(engine)[before:] == ["grant.recertified", "recertification.completed"]


def test_keep_all_keeps_every_undecided_grant(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now - timedelta(days=100))
    grants_for(engine, asset, rpolicy, now - timedelta(days=90), [OTHER, "U0THIRD1", "U0FOURTH1"])
    started = start(engine, asset.id, rpolicy, now)
    with transaction(engine) as s:
        kept = recertification.keep_all(session=s, campaign_id=started.id, actor=Actor(OWNER), now=now,
                                        policy=rpolicy)
    assert len(kept) == 3 and campaign(engine, started.id).completed_at == now
    assert log_actions(engine).count("grant.recertified") == 3
    with pytest.raises(Conflict, match="already decided"), transaction(engine) as s:
        recertification.keep_all(session=s, campaign_id=started.id, actor=Actor(OWNER), now=now, policy=rpolicy)


def test_a_long_list_is_split_into_messages_within_the_block_limit(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now - timedelta(days=100))
    grants_for(engine, asset, rpolicy, now - timedelta(days=90), [f"U0PERSON{n:02d}" for n in range(45)])
    started = start(engine, asset.id, rpolicy, now)
    with transaction(engine) as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.topic == f"recert:{started.id}")
                      .order_by(OutboxMessage.id)).all()
        contents = [render_outbox(s, r.payload) for r in rows]
    assert len(contents) == 3
    buttons = [e["value"] for c in contents for b in c["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e["action_id"] == "recert_keep"]
    assert len(buttons) == 45 == len(set(buttons))
    assert all(len(c["blocks"]) <= 50 for c in contents)
    assert "part 1 of 3" in contents[0]["text"]


def test_escalation_after_fourteen_days_names_only_undecided_grants(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now - timedelta(days=100))
    _, waiting = grants_for(engine, asset, rpolicy, now - timedelta(days=90), [OTHER, "U0THIRD1"])
    started = start(engine, asset.id, rpolicy, now)
    first, _ = items_of(engine, started.id)
    with transaction(engine) as s:
        recertification.keep(session=s, item_id=first.id, actor=Actor(OWNER), now=now, policy=rpolicy)
        assert recertification.escalations_due(session=s, now=now + timedelta(days=13, hours=23),
                                               policy=rpolicy) == []
        later = now + timedelta(days=14)
        assert recertification.escalations_due(session=s, now=later, policy=rpolicy) == [started.id]
    with transaction(engine) as s:
        assert recertification.escalate(session=s, campaign_id=started.id, now=later, policy=rpolicy)
    with transaction(engine) as s:
        assert not recertification.escalate(session=s, campaign_id=started.id, now=later, policy=rpolicy)
        assert recertification.escalations_due(session=s, now=later + timedelta(days=30), policy=rpolicy) == []
        [post] = [m for m in s.exec(select(OutboxMessage)).all() if m.payload.get("template") == "recert_escalated"]
        assert post.channel == SEC_CHANNEL and post.payload["grant_ids"] == [waiting.id]
        text = str(render_outbox(s, post.payload))
    assert "<@U0THIRD1>" in text and f"<@{OTHER}>" not in text and "open 14 days" in text
    [entry] = [e for e in log_entries(engine) if e.action == "recertification.escalated"]
    assert entry.after["undecided"] == [waiting.id]


def test_an_impact_analysis_request_makes_the_campaign_due_at_once_and_is_honoured_once(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now)
    [grant] = grants_for(engine, asset, rpolicy, now, [OTHER])
    assert start(engine, asset.id, rpolicy, now) is None  # scheduled, due in 90 days
    later = now + timedelta(days=3)
    with transaction(engine) as s:
        assert recertification.assets_due(session=s, now=later) == []
        audit.append_entry(session=s, actor=ADMIN, action="grant.recertification_requested", subject_type="grant",
                           subject_id=grant.id, subject_slug=asset.slug, now=later,
                           after={"asset": asset.id, "grantee": OTHER, "level": "read", "dataset": 1,
                                  "reason": "upstream dataset marked as containing personal data"})
        recert_schedule.bring_forward(session=s, asset_ids=[asset.id], now=later)  # as impact analysis does
    with transaction(engine) as s:
        assert recertification.assets_due(session=s, now=later) == [asset.id]
    started = start(engine, asset.id, rpolicy, later)
    assert started is not None and started.period == later
    with transaction(engine) as s:
        assert recertification.assets_due(session=s, now=later + timedelta(minutes=1)) == []
        assert recertification.schedule_of(session=s, asset_id=asset.id).next_due_at == later + timedelta(days=90)
    assert start(engine, asset.id, rpolicy, later + timedelta(minutes=1)) is None
    [entry] = [e for e in log_entries(engine) if e.action == "recertification.started"]
    assert entry.after["requested"] is True


def test_an_orphaned_assets_campaign_goes_to_governance(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now - timedelta(days=100))
    grants_for(engine, asset, rpolicy, now - timedelta(days=90), [OTHER])
    with transaction(engine) as s:
        orphans.flag_orphans(session=s, owner_id=OWNER, reason=orphans.DEACTIVATED, now=now, policy=rpolicy)
    started = start(engine, asset.id, rpolicy, now)
    with transaction(engine) as s:
        [row] = s.exec(select(OutboxMessage).where(OutboxMessage.topic == f"recert:{started.id}")).all()
    assert (row.method, row.channel) == (OutboxMethod.POST, GOV_CHANNEL)


# ---- orphans --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("team", "channel"), [("", GOV_CHANNEL), ("Data platform", GOV_CHANNEL),
                                               ("C0TEAMCH1", "C0TEAMCH1"), ("<#C0TEAMCH1|ml>", "C0TEAMCH1")])
def test_flagging_posts_take_ownership_to_the_team_channel_or_governance(engine, rpolicy, now, team, channel):
    asset = make_asset(engine, policy=rpolicy, now=now, team=team)
    with transaction(engine) as s:
        assert orphans.flag_orphans(session=s, owner_id=OWNER, reason=orphans.NOT_FOUND, now=now,
                                    policy=rpolicy) == [asset.id]
        assert orphans.flag_orphans(session=s, owner_id=OWNER, reason=orphans.NOT_FOUND, now=now,
                                    policy=rpolicy) == []
        [post] = [m for m in s.exec(select(OutboxMessage)).all() if m.payload.get("template") == "asset_orphaned"]
        assert post.channel == channel
        content = render_outbox(s, post.payload)
    [button] = [e for b in content["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == "orphan_take"
    assert log_actions(engine).count("asset.orphaned") == 1


def test_no_channel_at_all_flags_without_posting(engine, now):
    policy = parse_policy(default_policy_text())
    asset = make_asset(engine, policy=policy, now=now)
    with transaction(engine) as s:
        assert orphans.flag_orphans(session=s, owner_id=OWNER, reason=orphans.DEACTIVATED, now=now,
                                    policy=policy) == [asset.id]
        assert orphans.is_orphaned(session=s, asset_id=asset.id)
        assert [m for m in s.exec(select(OutboxMessage)).all()
                if m.payload.get("template") == "asset_orphaned"] == []


def test_take_ownership_moves_the_asset_once(engine, rpolicy, now):
    asset = make_asset(engine, policy=rpolicy, now=now)
    with transaction(engine) as s:
        orphans.flag_orphans(session=s, owner_id=OWNER, reason=orphans.DEACTIVATED, now=now, policy=rpolicy)
        orphan_id = s.exec(select(OrphanedAsset.id)).one()
    with transaction(engine) as s:
        orphans.take_ownership(session=s, orphan_id=orphan_id, actor=Actor(OTHER), now=now)
    with pytest.raises(Conflict, match=f"<@{OTHER}> already took ownership"), transaction(engine) as s:
        orphans.take_ownership(session=s, orphan_id=orphan_id, actor=Actor(ADMIN), now=now)
    with transaction(engine) as s:
        assert s.get(Asset, asset.id).owner_id == OTHER
        assert not orphans.is_orphaned(session=s, asset_id=asset.id)
        assert not orphans.owner_is_orphaned(session=s, owner_id=OWNER)
        updates = [m for m in s.exec(select(OutboxMessage)).all() if m.method == OutboxMethod.UPDATE]
        assert len(updates) == 1
    [entry] = [e for e in log_entries(engine) if e.action == "asset.ownership_taken"]
    assert (entry.actor, entry.before, entry.after) == (OTHER, {"owner_id": OWNER}, {"owner_id": OTHER})
