"""Classifying AI systems: who may, and turning answers into a stored tier."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from workflows.enums import AssetKind
from workflows.errors import InvalidInput, NotAllowed
from workflows.inventory import Actor, get_asset, record_classification
from workflows.models import Asset, Classification
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy
from workflows.risk import RiskAnswers, RiskOutcome, classify


def can_classify(*, asset: Asset, actor: Actor, policy: Policy) -> bool:
    """The owner, an admin or a member of the governance group may classify a system."""
    allowed_groups = {g for g in (policy.admin_group, policy.governance_group) if g}
    return actor.user_id == asset.owner_id or bool(allowed_groups & actor.groups)


def ensure_classifiable(*, asset: Asset, actor: Actor, policy: Policy) -> None:
    """Raise unless `asset` is an AI system the actor may classify."""
    if asset.kind != AssetKind.SYSTEM:
        raise InvalidInput(f"{asset.slug} is a {asset.kind.label.lower()}. Only AI systems are classified; "
                           "other assets inherit the tier of the systems that use them.")
    if not can_classify(asset=asset, actor=actor, policy=policy):
        raise NotAllowed(f"Only the owner of {asset.slug}, governance or a Steward admin can classify it.")


def classify_system(*, session: Session, asset_id: int, answers: RiskAnswers, actor: Actor, now: datetime,
                    policy: Policy) -> tuple[Classification, RiskOutcome]:
    """Apply the questionnaire to a system, store the outcome and pass the tier down its lineage."""
    asset = get_asset(session=session, asset_id=asset_id)
    ensure_classifiable(asset=asset, actor=actor, policy=policy)
    outcome = classify(answers)
    record = record_classification(
        session=session, asset_id=asset_id, tier=outcome.tier, answers=answers.model_dump(mode="json"),
        flags=outcome.transparency_flags, rationale=outcome.rationale, actor=actor, now=now, policy=policy,
    )
    if asset.owner_id != actor.user_id:
        add_message(session=session, method=OutboxMethod.DM, user=asset.owner_id, now=now,
                    payload={"template": "asset_classified_owner", "asset_id": asset.id, "actor": actor.user_id})
    return record, outcome
