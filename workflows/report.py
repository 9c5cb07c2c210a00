"""The governance report: the numbers behind `steward report`, its HTML page and `/steward report`.

`gather` is a pure read as of `now`: a handful of aggregate queries (counts grouped in SQL), plus two
small fetches that are summarised in Python because SQLite has no percentile functions (decision
times) and documentation types live in JSON (missing documents). Retired assets are left out of the
inventory, reviews and documentation gaps; they are no longer governed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from workflows.emergency import CONFIRM
from workflows.enums import AssetKind, AssetStatus, DocType, EdgeType, GrantStatus, RequestStatus, RiskTier
from workflows.errors import NotAllowed
from workflows.inventory import REVIEW_WINDOW, Actor
from workflows.models import AccessRequest, Asset, Decision, Edge, Grant
from workflows.policy import Policy

DOC_TIERS = (RiskTier.HIGH, RiskTier.LIMITED)
# Tiers in the order the report shows them, strictest first; None is "unclassified".
TIER_ORDER: tuple[RiskTier | None, ...] = (RiskTier.PROHIBITED, RiskTier.HIGH, RiskTier.LIMITED,
                                           RiskTier.MINIMAL, None)


@dataclass(frozen=True)
class OwnerReviews:
    """One owner's reviews: on time (due later than the window), due (within it) and overdue."""

    owner_id: str
    on_time: int = 0
    due: int = 0
    overdue: int = 0


@dataclass(frozen=True)
class DocGap:
    """A high or limited asset lacking documentation its tier requires."""

    slug: str
    kind: AssetKind
    tier: RiskTier
    owner_id: str
    missing: tuple[DocType, ...]


@dataclass(frozen=True)
class EmergencyGrant:
    """One break-glass grant and whether its owner review happened."""

    grant_id: int
    request_id: int
    asset_slug: str
    grantee_id: str
    granted_at: datetime
    status: GrantStatus
    reviewed: bool


@dataclass(frozen=True)
class OverdueGrant:
    """An active grant whose expiry has passed: the sweep should have ended it."""

    grant_id: int
    asset_slug: str
    grantee_id: str
    expires_at: datetime


@dataclass
class Report:
    """Everything the report shows, as of `now`."""

    now: datetime
    inventory: dict[AssetKind, dict[RiskTier | None, int]] = field(default_factory=dict)
    unclassified: int = 0
    unclassified_systems: int = 0
    reviews: list[OwnerReviews] = field(default_factory=list)
    doc_gaps: list[DocGap] = field(default_factory=list)
    grants_by_tier: dict[RiskTier | None, int] = field(default_factory=dict)
    decisions: int = 0
    median_decision: timedelta | None = None
    p95_decision: timedelta | None = None
    expired_undecided: int = 0
    emergency: list[EmergencyGrant] = field(default_factory=list)
    past_expiry: list[OverdueGrant] = field(default_factory=list)

    @property
    def total_assets(self) -> int:
        """Assets in the inventory (retired ones left out)."""
        return sum(sum(tiers.values()) for tiers in self.inventory.values())

    def assets_in_tier(self, tier: RiskTier | None) -> int:
        """Assets of every kind whose effective tier is `tier`."""
        return sum(tiers.get(tier, 0) for tiers in self.inventory.values())

    @property
    def active_grants(self) -> int:
        """Active grants of every tier."""
        return sum(self.grants_by_tier.values())

    @property
    def reviews_on_time(self) -> int:
        """Reviews not yet in their reminder window."""
        return sum(r.on_time for r in self.reviews)

    @property
    def reviews_due(self) -> int:
        """Reviews due within the reminder window."""
        return sum(r.due for r in self.reviews)

    @property
    def reviews_overdue(self) -> int:
        """Reviews past their due date."""
        return sum(r.overdue for r in self.reviews)

    @property
    def emergency_unreviewed(self) -> int:
        """Break-glass grants nobody has reviewed yet."""
        return sum(1 for e in self.emergency if not e.reviewed)

    @property
    def past_expiry_count(self) -> int:
        """Active grants past expiry; anything but zero is a failure."""
        return len(self.past_expiry)

    @property
    def ok(self) -> bool:
        """Whether the report's one hard rule holds: no grant outlives its expiry."""
        return not self.past_expiry


def may_see_report(*, actor: Actor, policy: Policy) -> bool:
    """Whether the actor is in the policy's admin or governance group (the report names people)."""
    return any(group and group in actor.groups for group in (policy.admin_group, policy.governance_group))


def ensure_may_see_report(*, actor: Actor, policy: Policy) -> None:
    """Raise NotAllowed unless the actor may see the report."""
    if not may_see_report(actor=actor, policy=policy):
        groups = " or ".join(f"`{g}`" for g in (policy.admin_group, policy.governance_group) if g) or "no group"
        raise NotAllowed(f"Only members of the {groups} group(s) in Steward's policy can see the governance "
                         "report. Ask a Steward admin if you need it.")


def gather(session: Session, now: datetime, policy: Policy) -> Report:
    """Gather the report as of `now`."""
    report = Report(now=now)
    report.inventory, report.unclassified, report.unclassified_systems = _inventory(session)
    report.reviews = _reviews(session, now)
    report.doc_gaps = _doc_gaps(session, policy)
    report.grants_by_tier = _grants_by_tier(session)
    durations = _decision_times(session)
    report.decisions = len(durations)
    report.median_decision = percentile(durations, 50)
    report.p95_decision = percentile(durations, 95)
    report.expired_undecided = session.exec(
        select(func.count()).select_from(AccessRequest).where(AccessRequest.status == RequestStatus.EXPIRED)
    ).one()
    report.emergency = _emergency(session)
    report.past_expiry = _past_expiry(session, now)
    return report


def percentile(values: list[timedelta], pct: float) -> timedelta | None:
    """The nearest-rank percentile of `values` (the 50th of an even count is the mean of the middle two)."""
    if not values:
        return None
    ordered = sorted(values)
    if pct == 50 and len(ordered) % 2 == 0:
        middle = len(ordered) // 2
        return (ordered[middle - 1] + ordered[middle]) / 2
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# ---- the queries -------------------------------------------------------------------------------------


def _live():
    return Asset.status != AssetStatus.RETIRED


def _inventory(session: Session) -> tuple[dict[AssetKind, dict[RiskTier | None, int]], int, int]:
    rows = session.exec(select(Asset.kind, Asset.effective_tier, func.count())
                        .where(_live()).group_by(Asset.kind, Asset.effective_tier)).all()
    inventory: dict[AssetKind, dict[RiskTier | None, int]] = {kind: {} for kind in AssetKind}
    for kind, tier, count in rows:
        inventory[kind][tier] = inventory[kind].get(tier, 0) + count
    unclassified = sum(tiers.get(None, 0) for tiers in inventory.values())
    systems = session.exec(select(func.count()).select_from(Asset).where(
        _live(), Asset.kind == AssetKind.SYSTEM, col(Asset.risk_tier).is_(None))).one()
    return inventory, unclassified, systems


def _reviews(session: Session, now: datetime) -> list[OwnerReviews]:
    due_at = col(Asset.next_review_due)
    overdue = func.sum(case((due_at <= now, 1), else_=0))
    due = func.sum(case(((due_at > now) & (due_at <= now + REVIEW_WINDOW), 1), else_=0))
    on_time = func.sum(case((due_at > now + REVIEW_WINDOW, 1), else_=0))
    rows = session.exec(select(Asset.owner_id, on_time, due, overdue)
                        .where(_live(), due_at.is_not(None)).group_by(Asset.owner_id)).all()
    reviews = [OwnerReviews(owner, int(a or 0), int(b or 0), int(c or 0)) for owner, a, b, c in rows]
    return sorted(reviews, key=lambda r: (-r.overdue, -r.due, r.owner_id))


def _doc_gaps(session: Session, policy: Policy) -> list[DocGap]:
    # As inventory.describe_asset's checklist, for every high and limited asset in two queries.
    assets = session.exec(select(Asset).where(_live(), col(Asset.effective_tier).in_(DOC_TIERS))
                          .order_by(Asset.slug)).all()
    wanted = {a.id: policy.required_docs(a.effective_tier, a.kind) for a in assets}
    wanted = {asset_id: docs for asset_id, docs in wanted.items() if docs}
    if not wanted:
        return []
    present: dict[int, set[str]] = defaultdict(set)
    rows = session.exec(select(Edge.target_id, Asset.details).join(Asset, Asset.id == Edge.source_id)
                        .where(Edge.type == EdgeType.DOCUMENTS, col(Edge.target_id).in_(list(wanted)),
                               _live())).all()
    for target_id, details in rows:
        present[target_id].add(str((details or {}).get("doc_type", "")))
    gaps = []
    for asset in assets:
        missing = tuple(d for d in wanted.get(asset.id, []) if d.value not in present[asset.id])
        if missing:
            gaps.append(DocGap(asset.slug, asset.kind, asset.effective_tier, asset.owner_id, missing))
    return gaps


def _grants_by_tier(session: Session) -> dict[RiskTier | None, int]:
    rows = session.exec(select(Asset.effective_tier, func.count()).select_from(Grant)
                        .join(Asset, Asset.id == Grant.asset_id)
                        .where(Grant.status == GrantStatus.ACTIVE).group_by(Asset.effective_tier)).all()
    return {tier: count for tier, count in rows}


def _decision_times(session: Session) -> list[timedelta]:
    # Break-glass requests are approved at the instant they are filed; they would only flatter the figure.
    rows = session.exec(select(AccessRequest.created_at, AccessRequest.resolved_at).where(
        col(AccessRequest.status).in_([RequestStatus.APPROVED, RequestStatus.DENIED]),
        col(AccessRequest.resolved_at).is_not(None), col(AccessRequest.emergency).is_(False))).all()
    return [resolved - created for created, resolved in rows]


def _emergency(session: Session) -> list[EmergencyGrant]:
    confirmed = select(Decision.request_id).where(Decision.outcome == CONFIRM).distinct().subquery()
    rows = session.exec(
        select(Grant.id, Grant.request_id, Asset.slug, Grant.grantee_id, Grant.granted_at, Grant.status,
               col(confirmed.c.request_id).is_not(None))
        .join(Asset, Asset.id == Grant.asset_id)
        .outerjoin(confirmed, confirmed.c.request_id == Grant.request_id)
        .where(col(Grant.emergency).is_(True)).order_by(col(Grant.granted_at).desc(), col(Grant.id).desc())
    ).all()
    return [EmergencyGrant(*row[:6], reviewed=bool(row[6])) for row in rows]


def _past_expiry(session: Session, now: datetime) -> list[OverdueGrant]:
    rows = session.exec(
        select(Grant.id, Asset.slug, Grant.grantee_id, Grant.expires_at).join(Asset, Asset.id == Grant.asset_id)
        .where(Grant.status == GrantStatus.ACTIVE, Grant.expires_at < now).order_by(col(Grant.expires_at))
    ).all()
    return [OverdueGrant(*row) for row in rows]
