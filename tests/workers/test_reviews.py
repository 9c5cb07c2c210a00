"""Review nudges and escalations through the sweep, the run_due worker and delivery to the fake Slack API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlmodel import select

from bot.views.messages import render_outbox
from tests.factories import OWNER, log_actions, make_asset
from workers.celery_app import WorkerContext
from workers.tasks import DueKind, deliver_batch, run_due_item, sweep_once
from workflows.db import transaction
from workflows.models import ReviewNudge
from workflows.policy import Policy, default_policy_text, parse_policy

GOV_CHANNEL = "C0GOVERN1"
TOKYO, LOS_ANGELES = "U0TOKYO01", "U0LOSAN01"


@pytest.fixture
def gov_policy() -> Policy:
    """The default policy with a governance channel."""
    data = yaml.safe_load(default_policy_text())
    data["channels"]["governance"] = GOV_CHANNEL
    return parse_policy(yaml.safe_dump(data))


@pytest.fixture
def rctx(engine, client, settings, clock, gov_policy) -> WorkerContext:
    """A worker context that renders with the real templates."""
    return WorkerContext(engine=engine, client=client, settings=settings, now=clock, renderer=render_outbox,
                         policy=gov_policy)


def tick(ctx: WorkerContext) -> list[tuple[str, int]]:
    """One sweep, with every due item run and every message delivered at once, as the workers would."""
    due: list[tuple[str, int]] = []
    batches: list[list[int]] = []
    sweep_once(context=ctx, enqueue_due=lambda kind, item_id: due.append((kind, item_id)),
               enqueue_delivery=batches.append, enqueue_provision=lambda job_id: None)
    for kind, item_id in due:
        batches.append(run_due_item(context=ctx, kind=kind, item_id=item_id))
    for batch in batches:
        deliver_batch(context=ctx, message_ids=batch)
    return due


def dms(fake, user_id: str) -> list[dict]:
    return [m for m in fake.messages(f"D{user_id}") if "review" in m.get("text", "")]


@pytest.mark.parametrize(("count", "more"), [(30, 0), (60, 13)])
def test_thirty_due_assets_are_one_message_within_slack_limits(engine, fake, rctx, clock, gov_policy, count, more):
    fake.add_user(OWNER, name="olive", tz="UTC")
    for n in range(count):
        make_asset(engine, policy=gov_policy, now=clock.now - timedelta(days=80), name=f"Dataset {n}")

    due = tick(rctx)  # schedules the owner: Monday 09:00 is now
    assert [kind for kind, _ in due] == [DueKind.REVIEW_SCHEDULE]
    due = tick(rctx)
    assert [kind for kind, _ in due] == [DueKind.REVIEW_NUDGE]

    [message] = dms(fake, OWNER)
    assert len(message["blocks"]) <= 50  # the fake Slack API refuses more, so delivery proves it too
    rows = [b for b in message["blocks"] if b.get("block_id", "").startswith("review:")]
    assert len(rows) == min(count, 47)
    assert all(b["accessory"]["type"] == "overflow" for b in rows)
    text = str(message["blocks"])
    assert (f"and {more} more" in text) == bool(more)
    # Still due, so the owner's next nudge is scheduled a week on; nothing else is sent meanwhile.
    assert [kind for kind, _ in tick(rctx)] == [DueKind.REVIEW_SCHEDULE]
    assert tick(rctx) == []
    with transaction(engine) as s:
        nudge = s.exec(select(ReviewNudge)).one()
        assert nudge.last_nudged_at == clock.now and nudge.next_nudge_at == clock.now + timedelta(days=7)
    assert log_actions(engine).count("review.nudged") == 1


def test_each_owner_is_nudged_at_their_own_nine_on_a_weekday(engine, fake, rctx, clock, gov_policy):
    fake.add_user(TOKYO, name="taro", tz="Asia/Tokyo", tz_offset=9 * 3600)
    fake.add_user(LOS_ANGELES, name="lena", tz="America/Los_Angeles", tz_offset=-8 * 3600)
    clock.now = datetime(2026, 3, 6, 10, 0, tzinfo=UTC)  # Friday: 19:00 in Tokyo, 02:00 in Los Angeles
    for owner in (TOKYO, LOS_ANGELES):
        make_asset(engine, policy=gov_policy, now=clock.now - timedelta(days=80), name=f"Set {owner}",
                   owner_id=owner, actor=owner)

    delivered: dict[str, list[datetime]] = {TOKYO: [], LOS_ANGELES: []}
    end = clock.now + timedelta(days=4)
    while clock.now < end:
        tick(rctx)
        for owner, times in delivered.items():
            if len(dms(fake, owner)) > len(times):
                times.append(clock.now)
        clock.advance(minutes=30)

    # Los Angeles: Friday 09:00 PST. Tokyo: not Friday evening nor the weekend, but Monday 09:00 JST.
    assert delivered[LOS_ANGELES] == [datetime(2026, 3, 6, 17, 0, tzinfo=UTC)]
    assert delivered[TOKYO] == [datetime(2026, 3, 9, 0, 0, tzinfo=UTC)]
    for owner, zone in ((TOKYO, "Asia/Tokyo"), (LOS_ANGELES, "America/Los_Angeles")):
        local = delivered[owner][0].astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
    with transaction(engine) as s:
        cached = {row.owner_id: row.tz for row in s.exec(select(ReviewNudge)).all()}
    assert cached == {TOKYO: "Asia/Tokyo", LOS_ANGELES: "America/Los_Angeles"}  # from users.info, kept
    # Slack is asked each time a nudge is scheduled (first, and again after it is sent), never per tick.
    asked = [c.args["user"] for c in fake.calls if c.method == "users.info"]
    assert sorted(asked) == sorted([TOKYO, TOKYO, LOS_ANGELES, LOS_ANGELES])


def test_overdue_reviews_escalate_to_the_governance_channel_once(engine, fake, rctx, clock, gov_policy):
    fake.add_user(OWNER, name="olive", tz="UTC")
    for n in range(3):
        make_asset(engine, policy=gov_policy, now=clock.now - timedelta(days=90 + 14 + n), name=f"Old {n}")

    due = tick(rctx)
    assert (DueKind.REVIEW_ESCALATION.value, 0) in due
    [post] = fake.messages(GOV_CHANNEL)
    text = str(post["blocks"])
    assert text.count(f"<@{OWNER}>") == 3
    assert "14 days overdue" in text and "16 days overdue" in text
    clock.advance(days=1)
    assert (DueKind.REVIEW_ESCALATION.value, 0) not in tick(rctx)
    assert len(fake.messages(GOV_CHANNEL)) == 1
    assert log_actions(engine).count("review.escalated") == 3
