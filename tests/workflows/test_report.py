"""The report's numbers on a known database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import OTHER, OWNER
from tests.report_seed import CLEAN, EMERGENCY_1, EMERGENCY_2, FAILING, seed_report
from workflows.db import transaction
from workflows.enums import AssetKind, DocType, GrantStatus, RiskTier
from workflows.report import OwnerReviews, gather, percentile

H = timedelta(hours=1)


@pytest.fixture
def seeded(engine, policy, now):
    seed_report(engine, policy=policy, t0=now)
    return engine


def _gather(engine, policy, when):
    with transaction(engine) as session:
        return gather(session, when, policy)


def test_inventory_by_kind_and_tier_leaves_out_retired(seeded, policy, now):
    report = _gather(seeded, policy, now + CLEAN)
    assert report.inventory[AssetKind.DATASET] == {None: 2, RiskTier.MINIMAL: 1}
    assert report.inventory[AssetKind.MODEL] == {RiskTier.HIGH: 1}
    assert report.inventory[AssetKind.SYSTEM] == {RiskTier.HIGH: 1, RiskTier.LIMITED: 1, RiskTier.MINIMAL: 1,
                                                 None: 1}
    assert report.inventory[AssetKind.DOCUMENTATION] == {None: 1}
    assert report.inventory[AssetKind.ALGORITHM] == {}
    assert report.total_assets == 9
    assert report.unclassified == 4
    assert report.unclassified_systems == 1
    assert report.assets_in_tier(RiskTier.HIGH) == 2


def test_reviews_by_owner(seeded, policy, now):
    report = _gather(seeded, policy, now + CLEAN)
    assert report.reviews == [OwnerReviews(OWNER, on_time=6, due=0, overdue=1),
                              OwnerReviews(OTHER, on_time=1, due=1, overdue=0)]
    assert (report.reviews_on_time, report.reviews_due, report.reviews_overdue) == (7, 1, 1)
    # Ten days on, churn-events (due at t0+10d) is overdue too.
    later = _gather(seeded, policy, now + timedelta(days=11))
    assert later.reviews_overdue == 2


def test_documentation_gaps_of_high_and_limited_assets(seeded, policy, now):
    gaps = {g.slug: g for g in _gather(seeded, policy, now + CLEAN).doc_gaps}
    assert set(gaps) == {"credit-model", "loan-approval", "chat-helper"}
    assert gaps["credit-model"].missing == (DocType.TECHNICAL_DOCUMENTATION,)
    assert gaps["credit-model"].tier == RiskTier.HIGH
    assert set(gaps["loan-approval"].missing) == {DocType.RISK_ASSESSMENT, DocType.IMPACT_ASSESSMENT,
                                                  DocType.TECHNICAL_DOCUMENTATION, DocType.INSTRUCTIONS_FOR_USE}
    assert gaps["chat-helper"].missing == (DocType.INSTRUCTIONS_FOR_USE,)
    assert gaps["chat-helper"].owner_id == OTHER


def test_grants_decisions_and_expired_requests(seeded, policy, now):
    report = _gather(seeded, policy, now + CLEAN)
    assert report.grants_by_tier == {None: 4, RiskTier.MINIMAL: 1, RiskTier.HIGH: 1}
    assert report.active_grants == 6
    assert report.decisions == 5
    assert report.median_decision == 3 * H
    assert report.p95_decision == 5 * H
    assert report.expired_undecided == 1


def test_emergency_grants_and_their_reviews(seeded, policy, now):
    report = _gather(seeded, policy, now + CLEAN)
    by_grantee = {e.grantee_id: e for e in report.emergency}
    assert set(by_grantee) == {EMERGENCY_1, EMERGENCY_2}
    assert by_grantee[EMERGENCY_1].reviewed and not by_grantee[EMERGENCY_2].reviewed
    assert report.emergency_unreviewed == 1
    assert all(e.asset_slug == "churn-events" and e.status == GrantStatus.ACTIVE for e in report.emergency)


def test_no_grant_past_expiry_is_ok(seeded, policy, now):
    report = _gather(seeded, policy, now + CLEAN)
    assert report.past_expiry == [] and report.ok


def test_grants_past_expiry_are_a_failure(seeded, policy, now):
    report = _gather(seeded, policy, now + FAILING)
    assert report.past_expiry_count == 3 and not report.ok
    assert {g.grantee_id for g in report.past_expiry} == {"U0REQUEST1", EMERGENCY_1, EMERGENCY_2}
    assert all(g.expires_at < now + FAILING for g in report.past_expiry)


def test_empty_database(engine, policy, now):
    report = _gather(engine, policy, now)
    assert report.total_assets == 0 and report.reviews == [] and report.doc_gaps == []
    assert report.median_decision is None and report.p95_decision is None and report.ok


@pytest.mark.parametrize("values, pct, expected", [
    ([], 50, None),
    ([1], 50, 1),
    ([1, 2], 50, 1.5),
    ([3, 1, 2], 50, 2),
    (list(range(1, 21)), 95, 19),
    (list(range(1, 101)), 95, 95),
    ([5, 1], 95, 5),
])
def test_percentile(values, pct, expected):
    result = percentile([timedelta(hours=v) for v in values], pct)
    assert result == (None if expected is None else timedelta(hours=expected))
