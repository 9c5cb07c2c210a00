"""Plain factory functions for tests: make assets and access requests without going through Slack."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import SQLModel, select

from workflows import access, audit
from workflows.db import transaction
from workflows.inventory import (
    Actor,
    parse_asset_input,
    record_classification,
    register_asset,
    retire_asset,
    update_asset,
)
from workflows.models import (
    AccessRequest,
    ApprovalStep,
    Asset,
    Classification,
    DecisionLogEntry,
    Grant,
    OutboxMessage,
)
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


# ---- access requests -----------------------------------------------------------------------------

REQUESTER = "U0REQUEST1"
GOV1, GOV2 = "U0GOV1", "U0GOV2"
SEC1 = "U0SEC1"
DATA_OWNER = "U0DATA1"
# Who is in which policy group, as the edge would resolve it from Slack.
GROUPS: dict[str, frozenset[str]] = {
    "governance": frozenset({GOV1, GOV2}),
    "security": frozenset({SEC1}),
    "admins": frozenset({ADMIN}),
}


def members(groups: Mapping[str, Iterable[str]] = GROUPS) -> Callable[[str], frozenset[str]]:
    """A `members_of` resolver over a plain {group: user ids} table; unknown groups are empty."""
    table = {name: frozenset(ids) for name, ids in groups.items()}
    return lambda group: table.get(group, frozenset())


def policy_with(base: Policy, *, approvers: Mapping[str, list[str]] | None = None, groups: Iterable[str] = (),
                **top: Any) -> Policy:
    """`base` with some tiers' approver steps replaced, extra (empty) groups and top-level keys, validated."""
    data = base.model_dump(mode="json")
    for name in groups:
        data["groups"].setdefault(name, [])
    for tier, steps in (approvers or {}).items():
        data["tiers"][tier]["approvers"] = list(steps)
    data.update(top)
    return Policy.model_validate(data)


def request_input(**overrides: Any) -> access.RequestInput:
    """What the request modal would hand over, with overrides."""
    fields: dict[str, Any] = {"level": "read", "duration_hours": 24, "justification": "Monthly churn analysis"}
    fields.update(overrides)
    return access.RequestInput.model_validate(fields)


def make_request(engine: Engine, asset: Asset, *, policy: Policy, now: datetime,
                 members_of: Callable[[str], frozenset[str]] | None = None, requester: str = REQUESTER,
                 reply_channel: str = "C0REPLY1", **fields: Any) -> AccessRequest:
    """File an access request through the service and return it."""
    with transaction(engine) as session:
        return access.request_access(session=session, asset_id=asset.id, data=request_input(**fields),
                                     requester=Actor(requester), now=now, policy=policy,
                                     members_of=members_of or members(), reply_channel=reply_channel)


def approve_request(engine: Engine, request: AccessRequest, approver: str, *, now: datetime,
                    policy: Policy | None = None) -> AccessRequest:
    """One approval click, in its own transaction (with `policy`, its provisioning connector applies)."""
    with transaction(engine) as session:
        return access.approve(session=session, request_id=request.id, approver_id=approver, now=now, policy=policy)


def deny_request(engine: Engine, request: AccessRequest, approver: str, *, now: datetime,
                 reason: str = "Not needed for this project") -> AccessRequest:
    """One deny, in its own transaction."""
    with transaction(engine) as session:
        return access.deny(session=session, request_id=request.id, approver_id=approver, reason=reason, now=now)


def reload_request(engine: Engine, request: AccessRequest) -> AccessRequest:
    """The request as it is stored now."""
    with transaction(engine) as session:
        return session.get(AccessRequest, request.id)


def request_steps(engine: Engine, request: AccessRequest) -> list[ApprovalStep]:
    """The request's approval steps, in order."""
    with transaction(engine) as session:
        return access.steps_of(session=session, request_id=request.id)


def grants_of(engine: Engine, request: AccessRequest) -> list[Grant]:
    """Grants whose originating request is `request`."""
    with transaction(engine) as session:
        return list(session.exec(select(Grant).where(Grant.request_id == request.id)).all())


def reload_grant(engine: Engine, grant: Grant) -> Grant:
    """The grant as it is stored now."""
    with transaction(engine) as session:
        return session.get(Grant, grant.id)


def make_grant(engine: Engine, asset: Asset, *, policy: Policy, now: datetime, requester: str = REQUESTER,
               **fields: Any) -> Grant:
    """A grant: a request the owner approves at once (the asset must need only the owner). It is active,
    unless `policy` names a provisioning connector: then it is being set up."""
    request = make_request(engine, asset, policy=policy, now=now, requester=requester, **fields)
    approve_request(engine, request, asset.owner_id, now=now, policy=policy)
    (grant,) = grants_of(engine, request)
    return grant


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table, to prove a refusal wrote nothing."""
    with transaction(engine) as session:
        return {table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
                for table in SQLModel.metadata.sorted_tables}


def outbox_rows(engine: Engine, *, after_id: int = 0) -> list[OutboxMessage]:
    """Outbox rows in the order they were queued, optionally only those after `after_id`."""
    with transaction(engine) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.id > after_id)
                                 .order_by(OutboxMessage.id)).all())


def last_outbox_id(engine: Engine) -> int:
    """The id of the newest outbox row (0 when there is none)."""
    rows = outbox_rows(engine)
    return rows[-1].id if rows else 0


def log_actions(engine: Engine, *, after_seq: int = 0) -> list[str]:
    """Decision-log actions in order, optionally only those after `after_seq`."""
    return [entry.action for entry in log_entries(engine, after_seq=after_seq)]


def log_entries(engine: Engine, *, after_seq: int = 0) -> list[DecisionLogEntry]:
    """Decision-log entries in order."""
    with transaction(engine) as session:
        return list(session.exec(select(DecisionLogEntry).where(DecisionLogEntry.seq > after_seq)
                                 .order_by(DecisionLogEntry.seq)).all())


def chain_ok(engine: Engine) -> bool:
    """Whether the decision log's hash chain verifies end to end."""
    with transaction(engine) as session:
        report = audit.verify_chain(session=session)
    assert report.ok, report.problem
    return report.ok
