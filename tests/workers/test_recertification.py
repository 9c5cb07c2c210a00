"""Recertification and orphans through the sweep, the run_due worker and delivery to the fake Slack API:
a year of campaigns per tier, the escalation to security, impact-analysis requests, and owners who left."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import yaml
from sqlmodel import select

from bot.views.messages import render_outbox
from tests.factories import OWNER, classify_system, log_actions, log_entries, make_asset, make_grant
from tests.workers.test_reviews import tick
from workers.celery_app import WorkerContext
from workflows import audit, recert_schedule, recertification
from workflows.db import transaction
from workflows.inventory import Actor
from workflows.models import Asset, OrphanedAsset, RecertCampaign
from workflows.policy import Policy, default_policy_text, parse_policy

SEC_CHANNEL, GOV_CHANNEL = "C0SECURE1", "C0GOVERN1"
GRANTEE = "U0GRANTEE1"


@pytest.fixture
def rpolicy() -> Policy:
    """Owners approve alone, grants may last 400 days, and security and governance have channels."""
    data = yaml.safe_load(default_policy_text())
    data["channels"].update(security=SEC_CHANNEL, governance=GOV_CHANNEL)
    data["grants"]["duration_choices_days"] = [1, 30, 400]
    for tier in ("minimal", "limited", "high"):
        data["tiers"][tier].update(approvers=["owner"], max_grant_days=400)
    return parse_policy(yaml.safe_dump(data))


@pytest.fixture
def rctx(engine, client, settings, clock, rpolicy) -> WorkerContext:
    """A worker context that renders with the real templates."""
    return WorkerContext(engine=engine, client=client, settings=settings, now=clock, renderer=render_outbox,
                         policy=rpolicy)


def recert_dms(fake, user_id: str) -> list[dict]:
    return [m for m in fake.messages(f"D{user_id}") if "ecertif" in m.get("text", "")]


def system(engine, policy, now, tier: str, name: str) -> Asset:
    asset = make_asset(engine, policy=policy, now=now, kind="system", name=name)
    classify_system(engine, asset, tier, policy=policy, now=now)
    return asset


def test_a_year_of_campaigns_follows_each_tiers_interval(engine, fake, rctx, clock, rpolicy):
    fake.add_user(OWNER, name="olive", tz="UTC")
    start = clock.now
    assets = {tier: system(engine, rpolicy, start, tier, f"{tier.title()} system")
              for tier in ("high", "limited", "minimal")}
    for asset in assets.values():
        make_grant(engine, asset, policy=rpolicy, now=start, requester=GRANTEE, duration_hours=400 * 24)

    started: dict[str, list[int]] = {tier: [] for tier in assets}
    seen = 0
    while clock.now <= start + timedelta(days=366):
        tick(rctx)
        with transaction(engine) as s:
            campaigns = s.exec(select(RecertCampaign).order_by(RecertCampaign.id)).all()[seen:]
            for c in campaigns:
                tier = next(t for t, a in assets.items() if a.id == c.asset_id)
                started[tier].append((c.started_at - start).days)
                assert c.period == c.started_at
                # The owner answers the day the list arrives.
                recertification.keep_all(session=s, campaign_id=c.id, actor=Actor(OWNER), now=clock.now,
                                         policy=rpolicy)
            seen += len(campaigns)
        clock.advance(days=1)

    assert started == {"high": [90, 180, 270, 360], "limited": [180, 360], "minimal": [365]}
    assert len(recert_dms(fake, OWNER)) == 7
    actions = Counter(log_actions(engine))
    assert actions["recertification.started"] == actions["recertification.completed"] == 7
    assert actions["grant.recertified"] == 7 and actions["recertification.escalated"] == 0
    assert fake.messages(SEC_CHANNEL) == []


def test_an_unfinished_campaign_escalates_once_to_security_after_fourteen_days(engine, fake, rctx, clock, rpolicy):
    fake.add_user(OWNER, name="olive", tz="UTC")
    asset = system(engine, rpolicy, clock.now, "high", "Hiring screen")
    for person in (GRANTEE, "U0SECOND1"):
        make_grant(engine, asset, policy=rpolicy, now=clock.now, requester=person, duration_hours=400 * 24)
    clock.advance(days=90)
    tick(rctx)
    [dm] = recert_dms(fake, OWNER)
    keep = [e for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]
            if e["action_id"] == "recert_keep"]
    assert len(keep) == 2
    with transaction(engine) as s:
        recertification.keep(session=s, item_id=int(keep[0]["value"]), actor=Actor(OWNER), now=clock.now,
                             policy=rpolicy)

    for _ in range(13):
        clock.advance(days=1)
        tick(rctx)
    assert fake.messages(SEC_CHANNEL) == []
    clock.advance(days=1)
    tick(rctx)
    [post] = fake.messages(SEC_CHANNEL)
    text = str(post["blocks"])
    assert "<@U0SECOND1>" in text and f"<@{GRANTEE}>" not in text
    for _ in range(3):
        clock.advance(days=1)
        tick(rctx)
    assert len(fake.messages(SEC_CHANNEL)) == 1
    assert log_actions(engine).count("recertification.escalated") == 1


def test_an_impact_analysis_request_starts_a_campaign_at_the_next_sweep(engine, fake, rctx, clock, rpolicy):
    fake.add_user(OWNER, name="olive", tz="UTC")
    asset = system(engine, rpolicy, clock.now, "high", "Credit model")
    grant = make_grant(engine, asset, policy=rpolicy, now=clock.now, requester=GRANTEE, duration_hours=400 * 24)
    tick(rctx)
    clock.advance(days=10)
    tick(rctx)
    assert recert_dms(fake, OWNER) == []
    with transaction(engine) as s:
        audit.append_entry(session=s, actor=OWNER, action="grant.recertification_requested", subject_type="grant",
                           subject_id=grant.id, subject_slug=asset.slug, now=clock.now,
                           after={"asset": asset.id, "grantee": GRANTEE, "level": "read", "dataset": 0,
                                  "reason": "upstream dataset raised from internal to restricted"})
        recert_schedule.bring_forward(session=s, asset_ids=[asset.id], now=clock.now)  # as impact analysis does
    clock.advance(minutes=1)
    tick(rctx)
    assert len(recert_dms(fake, OWNER)) == 1
    clock.advance(minutes=1)
    tick(rctx)
    assert len(recert_dms(fake, OWNER)) == 1


@pytest.mark.parametrize("gone", ["deactivated", "unknown"])
def test_the_sweep_flags_a_gone_owners_assets_and_sends_their_reviews_to_governance(engine, fake, rctx, clock,
                                                                                     rpolicy, gone):
    if gone == "deactivated":
        fake.add_user(OWNER, name="olive", tz="UTC", deleted=True)
    make_asset(engine, policy=rpolicy, now=clock.now - timedelta(days=80), name="Churn events")
    make_asset(engine, policy=rpolicy, now=clock.now - timedelta(days=80), name="Churn labels")

    tick(rctx)  # review scheduling asks users.info about the owner
    with transaction(engine) as s:
        flags = s.exec(select(OrphanedAsset)).all()
    assert len(flags) == 2
    assert {f.reason for f in flags} == {"deactivated" if gone == "deactivated" else "user_not_found"}
    tick(rctx)
    posts = fake.messages(GOV_CHANNEL)
    assert sum("Take ownership" in str(p["blocks"]) for p in posts) == 2
    # The gone owner's review nudge is not lost: it goes to governance.
    assert [p for p in posts if "need a review" in p.get("text", "")]
    assert [m for m in fake.messages(f"D{OWNER}") if "review" in m.get("text", "")] == []
    assert log_actions(engine).count("asset.orphaned") == 2
    assert all(e.after["channel"] == GOV_CHANNEL for e in log_entries(engine) if e.action == "asset.orphaned")
