"""Plain factory functions for tests: make assets without going through Slack."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from workflows.db import transaction
from workflows.inventory import (
    Actor,
    parse_asset_input,
    record_classification,
    register_asset,
    retire_asset,
    update_asset,
)
from workflows.models import Asset, Classification
from workflows.policy import Policy
from workflows.risk import RiskAnswers, classify

OWNER = "U0OWNER1"
OTHER = "U0OTHER1"
ADMIN = "U0ADMIN1"

_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "system": {"intended_purpose": "Decide things"},
    "documentation": {"doc_type": "model_card", "url": "https://docs.example.com/card"},
}


def asset_fields(kind: str = "dataset", name: str = "Churn events", **overrides: Any) -> dict[str, Any]:
    """Raw form values for an asset of `kind`, with overrides."""
    fields: dict[str, Any] = {"kind": kind, "name": name, "owner_id": OWNER,
                              "details": dict(_KIND_DEFAULTS.get(kind, {}))}
    details = overrides.pop("details", None)
    if details:
        fields["details"].update(details)
    fields.update(overrides)
    return fields


def make_asset(engine: Engine, *, policy: Policy, now: datetime, actor: str = OWNER, **fields: Any) -> Asset:
    """Register an asset through the service and return it."""
    with transaction(engine) as session:
        return register_asset(session=session, data=parse_asset_input(asset_fields(**fields)),
                              actor=Actor(actor), now=now, policy=policy)


# Canned questionnaire answers that lead to each tier.
TIER_ANSWERS: dict[str, dict[str, Any]] = {
    "minimal": {},
    "limited": {"transparency_duties": ["interacts_with_people"]},
    "high": {"annex_iii_areas": ["employment"]},
    "prohibited": {"prohibited_practices": ["social_scoring"]},
}


def editable_fields(asset: Asset, **overrides: Any) -> dict[str, Any]:
    """Raw form values that reproduce `asset` as it is (lineage left out), with overrides."""
    fields: dict[str, Any] = {
        name: getattr(asset, name)
        for name in ("kind", "name", "slug", "description", "owner_id", "team", "location_uri", "version",
                     "license", "sensitivity", "contains_personal_data")
    }
    fields["details"] = dict(asset.details)
    fields.update(overrides)
    return fields


def edit_asset(engine: Engine, asset: Asset, *, policy: Policy, now: datetime, actor: str = OWNER,
               groups: frozenset[str] = frozenset(), **overrides: Any) -> Asset:
    """Edit an asset through the service: its current values with `overrides`."""
    with transaction(engine) as session:
        data = parse_asset_input(editable_fields(asset, **overrides))
        return update_asset(session=session, asset_id=asset.id, data=data, actor=Actor(actor, groups), now=now,
                            policy=policy)


def classify_system(engine: Engine, asset: Asset, tier: str, *, policy: Policy, now: datetime,
                    actor: str = OWNER) -> Classification:
    """Answer the questionnaire for a system so that it lands in `tier`, and record it."""
    outcome = classify(RiskAnswers.model_validate(TIER_ANSWERS[tier]))
    assert outcome.tier == tier
    with transaction(engine) as session:
        return record_classification(session=session, asset_id=asset.id, tier=outcome.tier,
                                     answers=TIER_ANSWERS[tier], flags=outcome.transparency_flags,
                                     rationale=outcome.rationale, actor=Actor(actor), now=now, policy=policy)


def retire(engine: Engine, asset: Asset, *, policy: Policy, now: datetime, actor: str = OWNER) -> Asset:
    """Retire an asset through the service."""
    with transaction(engine) as session:
        return retire_asset(session=session, asset_id=asset.id, actor=Actor(actor), now=now, policy=policy)


def reload(engine: Engine, asset: Asset) -> Asset:
    """The asset as it is stored now."""
    with transaction(engine) as session:
        return session.get(Asset, asset.id)
