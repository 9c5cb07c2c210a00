"""Asset reviews in time: the weekly nudge at 09:00 local on a weekday, the buttons, and overdue escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
import yaml
from sqlmodel import select

from tests.factories import (
    ADMIN,
    OTHER,
    OWNER,
    chain_ok,
    classify_system,
    log_actions,
    log_entries,
    make_asset,
    make_grant,
    reload,
    retire,
)
from workflows import reviews
from workflows.db import transaction
from workflows.enums import GrantStatus
from workflows.errors import Conflict, InvalidInput, NotAllowed
from workflows.inventory import Actor
from workflows.models import Asset, AssetReview, Grant, OutboxMessage, ReviewNudge
from workflows.outbox import OutboxMethod, mark_sent
from workflows.policy import Policy, default_policy_text, parse_policy

GOV_CHANNEL = "C0GOVERN1"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def at(text: str) -> datetime:
    """A UTC time from "YYYY-MM-DD HH:MM"."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.fixture
def gov_policy() -> Policy:
    """The default policy with a governance channel and an admin."""
    data = yaml.safe_load(default_policy_text())
    data["channels"]["governance"] = GOV_CHANNEL
    data["groups"]["admins"] = [ADMIN]
    return parse_policy(yaml.safe_dump(data))


# ---- pure: when is 09:00 on a weekday --------------------------------------------------------------


@pytest.mark.parametrize(("after", "tz", "expected"), [
    ("2026-03-02 08:00", "UTC", "2026-03-02 09:00"),           # Monday before nine: today
    ("2026-03-02 09:00", "UTC", "2026-03-02 09:00"),           # exactly nine: now
    ("2026-03-02 09:01", "UTC", "2026-03-03 09:00"),           # after nine: tomorrow
    ("2026-03-06 10:00", "UTC", "2026-03-09 09:00"),           # Friday after nine: Monday
    ("2026-03-07 08:00", "UTC", "2026-03-09 09:00"),           # Saturday: Monday
    ("2026-03-06 10:00", "Asia/Tokyo", "2026-03-09 00:00"),    # Fri 19:00 JST: Mon 09:00 JST
    ("2026-03-06 10:00", "America/Los_Angeles", "2026-03-06 17:00"),  # Fri 02:00 PST: Fri 09:00 PST
    ("2026-03-07 10:00", "America/Los_Angeles", "2026-03-09 16:00"),  # over the DST change: 09:00 PDT
    ("2026-03-06 10:00", "Not/AZone", "2026-03-09 09:00"),     # an unknown zone counts as UTC
])
def test_next_nudge_time(after, tz, expected):
    assert reviews.next_nudge_time(at(after), tz) == at(expected)


# ---- the year walk -----------------------------------------------------------------------------------


class Walk:
    """Runs what the sweep and the workers would, every six hours, and records every nudge and escalation.
    Each owner ignores the nudges until their review was escalated, then answers the next one with
    Still accurate."""

    def __init__(self, engine, policy: Policy) -> None:
        self.engine, self.policy = engine, policy
        self.nudges: dict[str, list[datetime]] = {}
        self.escalations: dict[int, list[datetime]] = {}
        self.reviews: dict[int, list[datetime]] = {}

    def step(self, now: datetime) -> None:
        engine = self.engine
        with transaction(engine) as s:
            for asset_id in reviews.assets_to_schedule(session=s, now=now):
                reviews.schedule_nudge(session=s, asset_id=asset_id, now=now, tz="UTC")
        sent = []
        with transaction(engine) as s:
            for nudge_id in reviews.due_nudge_ids(session=s, now=now):
                message = reviews.send_nudge(session=s, nudge_id=nudge_id, now=now, policy=self.policy)
                if message is not None:
                    sent.append(message.id)
                    self.nudges.setdefault(message.user, []).append(now)
            if reviews.escalation_due(session=s, now=now, policy=self.policy):
                for asset_id in reviews.escalate_overdue(session=s, now=now, policy=self.policy):
                    self.escalations.setdefault(asset_id, []).append(now)
        with transaction(engine) as s:  # Slack accepts each nudge
            for message_id in sent:
                row = s.get(OutboxMessage, message_id)
                mark_sent(session=s, message=row, channel=f"D{row.user}", ts=f"{message_id}.1", now=now)
                assert reviews.record_nudge_receipt(session=s, message=row)
                for asset_id in row.payload["asset_ids"]:
                    asset, state = s.get(Asset, asset_id), s.get(AssetReview, asset_id)
                    if state is not None and state.escalated_for == asset.next_review_due:
                        reviews.record_review(session=s, asset_id=asset_id, actor=Actor(asset.owner_id), now=now,
                                              policy=self.policy, message_id=message_id)
                        self.reviews.setdefault(asset_id, []).append(now)


def days(*texts: str) -> list[datetime]:
    return [at(f"{t} 09:00") for t in texts]


def test_a_year_of_reviews_for_a_high_a_limited_and_a_minimal_system(engine, gov_policy):
    owners = {"high": "U0HIGH001", "limited": "U0LIMIT01", "minimal": "U0MINIM01"}
    assets = {}
    for tier, owner in owners.items():
        asset = make_asset(engine, policy=gov_policy, now=START, kind="system", name=f"{tier} system",
                           owner_id=owner, actor=owner)
        classify_system(engine, asset, tier, policy=gov_policy, now=START, actor=owner)
        assets[tier] = reload(engine, asset)
    assert [assets[t].next_review_due for t in owners] == [at("2026-05-31 09:00"), at("2026-08-29 09:00"),
                                                           at("2027-03-02 09:00")]
    walk = Walk(engine, gov_policy)
    now = START - timedelta(hours=6)
    while now < START + timedelta(days=400):
        walk.step(now)
        now += timedelta(hours=6)

    high, limited, minimal = (assets[t].id for t in owners)
    # High (90 days): due Sun 31 May; the window opens Sun 17 May, so the first nudge is Monday 09:00, then
    # weekly. Overdue by 14 days on Sun 14 Jun: escalated; the next nudge (15 Jun) is answered, so the next
    # due is 13 Sep, its window opens Sun 30 Aug, and the cycle repeats (due 27 Dec, then 11 Apr 2027).
    assert walk.nudges[owners["high"]] == days(
        "2026-05-18", "2026-05-25", "2026-06-01", "2026-06-08", "2026-06-15",
        "2026-08-31", "2026-09-07", "2026-09-14", "2026-09-21", "2026-09-28",
        "2026-12-14", "2026-12-21", "2026-12-28", "2027-01-04", "2027-01-11",
        "2027-03-29", "2027-04-05")
    assert walk.escalations[high] == days("2026-06-14", "2026-09-27", "2027-01-10")
    assert walk.reviews[high] == days("2026-06-15", "2026-09-28", "2027-01-11")
    # Limited (180 days): due Sat 29 Aug, escalated Sat 12 Sep; reviewed Mon 14 Sep, so next due Sat 13 Mar.
    assert walk.nudges[owners["limited"]] == days(
        "2026-08-17", "2026-08-24", "2026-08-31", "2026-09-07", "2026-09-14",
        "2027-03-01", "2027-03-08", "2027-03-15", "2027-03-22", "2027-03-29")
    assert walk.escalations[limited] == days("2026-09-12", "2027-03-27")
    assert walk.reviews[limited] == days("2026-09-14", "2027-03-29")
    # Minimal (365 days): due Tue 2 Mar 2027; the window opens on a Tuesday at 09:00, so it nudges then.
    # It is 14 days overdue at the very hour of the 16 Mar nudge, which the owner then answers.
    assert walk.nudges[owners["minimal"]] == days("2027-02-16", "2027-02-23", "2027-03-02", "2027-03-09",
                                                   "2027-03-16")
    assert walk.escalations[minimal] == days("2027-03-16")
    assert walk.reviews[minimal] == days("2027-03-16")
    for times in walk.nudges.values():
        assert all(t.weekday() < 5 and (t.hour, t.minute) == (9, 0) for t in times)
        assert all(b - a >= timedelta(days=7) for a, b in pairwise(times))
    assert chain_ok(engine)
    actions = log_actions(engine)
    assert actions.count("review.nudged") == sum(len(t) for t in walk.nudges.values())
    assert actions.count("review.escalated") == sum(len(t) for t in walk.escalations.values())
    assert actions.count("asset.reviewed") == sum(len(t) for t in walk.reviews.values())


# ---- batching and the nudge row -------------------------------------------------------------------


def test_one_nudge_lists_every_due_asset_and_is_marked_only_when_slack_accepts_it(engine, policy):
    created = START - timedelta(days=80)  # unclassified: the shortest interval (90 days), so due in 10 days
    for n in range(30):
        make_asset(engine, policy=policy, now=created, name=f"Dataset {n}")
    make_asset(engine, policy=policy, now=START, name="Not due yet")
    with transaction(engine) as s:
        [asset_id] = reviews.assets_to_schedule(session=s, now=START)  # one owner, one item
        assert reviews.schedule_nudge(session=s, asset_id=asset_id, now=START, tz="UTC")
        assert not reviews.schedule_nudge(session=s, asset_id=asset_id, now=START, tz="UTC")  # already
    with transaction(engine) as s:
        [nudge_id] = reviews.due_nudge_ids(session=s, now=START)
        message = reviews.send_nudge(session=s, nudge_id=nudge_id, now=START, policy=policy)
        assert len(message.payload["asset_ids"]) == 30
        assert message.payload["message_id"] == message.id
        assert reviews.send_nudge(session=s, nudge_id=nudge_id, now=START, policy=policy) is None  # once
        message_id = message.id
    with transaction(engine) as s:
        row = s.exec(select(ReviewNudge)).one()
        assert (row.last_nudged_at, row.queued_at, row.outbox_id) == (None, START, message_id)
        # Still due and unsent: rescheduling waits a week from when it was written.
        assert reviews.schedule_nudge(session=s, asset_id=asset_id, now=START + timedelta(hours=1))
        assert row.next_nudge_at == START + timedelta(days=7)
    assert "review.nudged" not in log_actions(engine)
    with transaction(engine) as s:
        sent = s.get(OutboxMessage, message_id)
        mark_sent(session=s, message=sent, channel="D1", ts="1.1", now=START + timedelta(minutes=3))
        assert reviews.record_nudge_receipt(session=s, message=sent)
    with transaction(engine) as s:
        row = s.exec(select(ReviewNudge)).one()
        assert row.last_nudged_at == START + timedelta(minutes=3)
    [entry] = [e for e in log_entries(engine) if e.action == "review.nudged"]
    assert entry.after["owner"] == OWNER and len(entry.after["assets"]) == 30


# ---- the buttons ---------------------------------------------------------------------------------------


@pytest.fixture
def due_asset(engine, gov_policy) -> Asset:
    return make_asset(engine, policy=gov_policy, now=START - timedelta(days=80))


def act(engine, fn, asset, actor=OWNER, **kwargs):
    with transaction(engine) as s:
        return fn(session=s, asset_id=asset.id, actor=Actor(actor, frozenset(kwargs.pop("groups", ()))),
                  now=START, **kwargs)


def test_still_accurate_records_the_review_and_moves_the_date(engine, gov_policy, due_asset):
    act(engine, reviews.record_review, due_asset, policy=gov_policy)
    asset = reload(engine, due_asset)
    assert (asset.last_reviewed_at, asset.next_review_due) == (START, START + timedelta(days=90))
    [entry] = [e for e in log_entries(engine) if e.action == "asset.reviewed"]
    assert entry.before["next_review_due"] == due_asset.next_review_due.isoformat()
    assert entry.actor == OWNER


def test_an_admin_may_review_and_anyone_else_is_refused(engine, gov_policy, due_asset):
    with pytest.raises(NotAllowed, match="owner"):
        act(engine, reviews.record_review, due_asset, actor=OTHER, policy=gov_policy)
    act(engine, reviews.record_review, due_asset, actor=ADMIN, groups={"admins"}, policy=gov_policy)
    assert reload(engine, due_asset).last_reviewed_at == START


def test_a_retired_asset_is_not_reviewed(engine, gov_policy, due_asset):
    retire(engine, due_asset, policy=gov_policy, now=START)
    for fn in (reviews.record_review, reviews.snooze_review, reviews.retire_reviewed):
        with pytest.raises(Conflict, match="retired"):
            act(engine, fn, due_asset, policy=gov_policy)


def test_snooze_delays_a_week_at_most_twice_per_review_period(engine, gov_policy, due_asset):
    due = due_asset.next_review_due
    act(engine, reviews.snooze_review, due_asset, policy=gov_policy)
    act(engine, reviews.snooze_review, due_asset, policy=gov_policy)
    assert reload(engine, due_asset).next_review_due == due + timedelta(days=14)
    with pytest.raises(InvalidInput, match="already snoozed 2 times"):
        act(engine, reviews.snooze_review, due_asset, policy=gov_policy)
    assert reload(engine, due_asset).next_review_due == due + timedelta(days=14)
    act(engine, reviews.record_review, due_asset, policy=gov_policy)  # a new review period
    act(engine, reviews.snooze_review, due_asset, policy=gov_policy)
    assert log_actions(engine).count("asset.review_snoozed") == 3


def test_retire_ends_every_active_grant(engine, gov_policy, policy):
    asset = make_asset(engine, policy=policy, now=START - timedelta(days=80))
    grants = [make_grant(engine, asset, policy=policy, now=START - timedelta(hours=1), requester=who)
              for who in ("U0REQUEST1", "U0REQUEST2")]
    retired, ended = act(engine, reviews.retire_reviewed, asset, policy=gov_policy)
    assert retired.status.value == "retired" and len(ended) == 2
    with transaction(engine) as s:
        for grant in grants:
            stored = s.get(Grant, grant.id)
            assert (stored.status, stored.ended_by) == (GrantStatus.REVOKED, OWNER)
    actions = log_actions(engine)
    assert "asset.retired" in actions and actions.count("grant.revoked") == 2


# ---- escalation --------------------------------------------------------------------------------------


def test_overdue_reviews_escalate_once_in_one_message(engine, gov_policy):
    created = START - timedelta(days=90 + 14)
    first, second = (make_asset(engine, policy=gov_policy, now=created, name=f"Set {n}") for n in "ab")
    late = make_asset(engine, policy=gov_policy, now=created + timedelta(days=1), name="Later")
    with transaction(engine) as s:
        assert reviews.escalation_due(session=s, now=START, policy=gov_policy)
        assert sorted(reviews.escalate_overdue(session=s, now=START, policy=gov_policy)) == sorted([first.id,
                                                                                                    second.id])
    with transaction(engine) as s:
        assert not reviews.escalation_due(session=s, now=START + timedelta(hours=12), policy=gov_policy)
        [post] = [m for m in s.exec(select(OutboxMessage)).all()
                  if m.payload.get("template") == "reviews_overdue"]
        assert (post.method, post.channel) == (OutboxMethod.POST, GOV_CHANNEL)
        assert reviews.escalate_overdue(session=s, now=START + timedelta(days=1), policy=gov_policy) == [late.id]
    # A snooze starts a new overdue period, which escalates again when it is 14 days overdue.
    act(engine, reviews.snooze_review, first, policy=gov_policy)
    with transaction(engine) as s:
        assert reviews.escalate_overdue(session=s, now=START + timedelta(days=6), policy=gov_policy) == []
        assert reviews.escalate_overdue(session=s, now=START + timedelta(days=7), policy=gov_policy) == [first.id]
    assert log_actions(engine).count("review.escalated") == 4


def test_no_governance_channel_means_no_escalation(engine, policy):
    make_asset(engine, policy=policy, now=START - timedelta(days=200))
    with transaction(engine) as s:
        assert not reviews.escalation_due(session=s, now=START, policy=policy)
        assert reviews.escalate_overdue(session=s, now=START, policy=policy) == []
