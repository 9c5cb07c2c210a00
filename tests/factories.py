"""Plain factory functions for tests: make assets without going through Slack."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from workflows.db import transaction
from workflows.inventory import Actor, parse_asset_input, register_asset
from workflows.models import Asset
from workflows.policy import Policy

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
