"""Impact analysis: what was built from a dataset, who holds access to it, and what happens when the
dataset turns out to hold personal data or is raised to restricted.

When an edit marks a dataset as containing personal data, or raises it to restricted, and models or
systems were already built from it, `assess_dataset_change` runs in the edit's transaction:

- each owner of a downstream model or system gets one DM ("impact_notice") listing what changed and
  which of their assets are affected; the person who made the change is not told about their own;
- the decision log gets one "asset.impact_assessed" entry naming the affected assets;
- each active grant on a downstream high-risk asset is queued for recertification. There is no
  reviews table for that yet, so the queue is the decision log itself: one
  "grant.recertification_requested" entry per grant (subject: the grant), which the reviews feature
  can pick up without a migration.

This module imports no other service module that imports the inventory, so the inventory can call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from workflows import audit, lineage, recert_schedule
from workflows.enums import AssetKind, AssetStatus, GrantStatus, RiskTier, Sensitivity
from workflows.models import Asset, Grant
from workflows.outbox import OutboxMethod, add_message

# What counts as "built from" the data: the assets whose owners must hear about it.
AFFECTED_KINDS = frozenset({AssetKind.MODEL, AssetKind.SYSTEM})
SENSITIVITY_RANK = {s: i for i, s in enumerate(Sensitivity)}
PERSONAL_DATA, RESTRICTED = "contains_personal_data", "sensitivity"
IMPACT_TEMPLATE = "impact_notice"


@dataclass(frozen=True)
class Affected:
    """A model or system built from the data, and who holds access to it now."""

    asset: Asset
    grants: tuple[Grant, ...]

    @property
    def high_risk(self) -> bool:
        """Whether its tier (its own or inherited) is high or stricter: its grants need recertifying."""
        tier = self.asset.effective_tier
        return tier is not None and tier.rank >= RiskTier.HIGH.rank


@dataclass(frozen=True)
class Impact:
    """The models and systems downstream of a dataset, by slug, with their active grants."""

    dataset: Asset
    affected: list[Affected]

    def by_owner(self) -> dict[str, list[Affected]]:
        """The affected assets grouped by owner, owners in order of first appearance."""
        owners: dict[str, list[Affected]] = {}
        for item in self.affected:
            owners.setdefault(item.asset.owner_id, []).append(item)
        return owners

    def grants_to_recertify(self) -> list[Grant]:
        """Active grants on affected high-risk assets."""
        return [g for item in self.affected if item.high_risk for g in item.grants]


def downstream_impact(*, session: Session, dataset: Asset) -> Impact:
    """The models and systems built from `dataset` (any dependency edge, through derived data) that still
    run, and the active grants on each."""
    ids = lineage.downstream_ids(session=session, start=[dataset.id], include_start=False)
    return Impact(dataset=dataset, affected=affected_assets(session=session, asset_ids=ids))


def affected_assets(*, session: Session, asset_ids: Iterable[int]) -> list[Affected]:
    """The models and systems among `asset_ids` that are not retired, by slug, with their active grants
    (two queries, however many there are)."""
    ids = list(asset_ids)
    if not ids:
        return []
    assets = session.exec(
        select(Asset).where(col(Asset.id).in_(ids), col(Asset.kind).in_([k.value for k in AFFECTED_KINDS]),
                            Asset.status != AssetStatus.RETIRED).order_by(col(Asset.slug))
    ).all()
    grants: dict[int, list[Grant]] = {}
    if assets:
        # The same rows access.active_grants returns, for every asset at once.
        for grant in session.exec(
            select(Grant).where(col(Grant.asset_id).in_([a.id for a in assets]),
                                Grant.status == GrantStatus.ACTIVE)
            .order_by(col(Grant.expires_at), col(Grant.id))
        ).all():
            grants.setdefault(grant.asset_id, []).append(grant)
    return [Affected(asset=a, grants=tuple(grants.get(a.id, ()))) for a in assets]


def dataset_changes(*, kind: AssetKind, before: dict[str, Any],
                    after: dict[str, Any]) -> dict[str, list[Any]]:
    """The edits that call for impact analysis ({field: [before, after]}): personal data newly marked, or
    sensitivity raised to restricted from something lower. Empty for anything else."""
    if kind != AssetKind.DATASET:
        return {}
    changes: dict[str, list[Any]] = {}
    if after.get(PERSONAL_DATA) and not before.get(PERSONAL_DATA):
        changes[PERSONAL_DATA] = [False, True]
    was, becomes = _sensitivity(before.get(RESTRICTED)), _sensitivity(after.get(RESTRICTED))
    if becomes == Sensitivity.RESTRICTED and was is not None and _rank(was) < _rank(becomes):
        changes[RESTRICTED] = [was.value, becomes.value]
    return changes


def assess_dataset_change(*, session: Session, dataset: Asset, before: dict[str, Any], after: dict[str, Any],
                          actor_id: str, now: datetime) -> Impact | None:
    """After an edit: if it marked the dataset personal or restricted and anything was built from it, tell
    the affected owners, log the assessment and queue recertification. None when nothing was due."""
    changes = dataset_changes(kind=dataset.kind, before=before, after=after)
    if not changes:
        return None
    impact = downstream_impact(session=session, dataset=dataset)
    if not impact.affected:
        return None
    owners = impact.by_owner()
    recertify = impact.grants_to_recertify()
    notified = [owner for owner in owners if owner != actor_id]
    audit.append_entry(
        session=session, actor=actor_id, action="asset.impact_assessed", subject_type="asset",
        subject_id=dataset.id, subject_slug=dataset.slug, now=now,
        after={"changes": changes, "affected": [item.asset.id for item in impact.affected],
               "notified": notified, "recertification": [g.id for g in recertify]},
    )
    slugs = {item.asset.id: item.asset.slug for item in impact.affected}
    for grant in recertify:
        audit.append_entry(
            session=session, actor=actor_id, action="grant.recertification_requested", subject_type="grant",
            subject_id=grant.id, subject_slug=slugs[grant.asset_id], now=now,
            after={"asset": grant.asset_id, "grantee": grant.grantee_id, "level": grant.level.value,
                   "dataset": dataset.id, "reason": _reason(changes)},
        )
    recert_schedule.bring_forward(session=session, asset_ids=[g.asset_id for g in recertify], now=now)
    for owner in notified:
        mine = owners[owner]
        add_message(session=session, method=OutboxMethod.DM, user=owner, now=now,
                    topic=f"impact:{dataset.id}",
                    payload={"template": IMPACT_TEMPLATE, "dataset_id": dataset.id, "actor": actor_id,
                             "changes": changes, "asset_ids": [item.asset.id for item in mine],
                             "recertify_ids": [g.id for item in mine if item.high_risk for g in item.grants]})
    return impact


def _rank(value: Sensitivity) -> int:
    return SENSITIVITY_RANK[value]


def _sensitivity(value: Any) -> Sensitivity | None:
    try:
        return Sensitivity(value)
    except ValueError:
        return None


def _reason(changes: dict[str, list[Any]]) -> str:
    parts = []
    if PERSONAL_DATA in changes:
        parts.append("marked as containing personal data")
    if RESTRICTED in changes:
        parts.append(f"raised from {changes[RESTRICTED][0]} to restricted")
    return "upstream dataset " + " and ".join(parts)
