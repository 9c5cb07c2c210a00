"""The world the hostile-input suite attacks: one person per role of the authorization matrix, their
policy, and an asset with everything that can be acted on (a grant, a pending two-step request, a
recertification and, when asked, an orphan flag), built through the services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlmodel import SQLModel, select

from tests.factories import ADMIN, OTHER, OWNER, approve_request, grants_of, make_asset, make_request, members
from workflows import audit, orphans, recertification
from workflows.authorization import Role
from workflows.db import transaction
from workflows.models import OrphanedAsset, OutboxMessage, RecertItem
from workflows.policy import Policy, default_policy_text


@dataclass(frozen=True)
class Person:
    """Who plays a role: a Slack user id, and whether Slack reports the account deactivated."""

    role: Role
    user_id: str
    name: str
    deactivated: bool = False


CAST: tuple[Person, ...] = (
    Person(Role.REQUESTER, "U0REQUEST1", "rita"),
    Person(Role.OWNER, OWNER, "olive"),
    Person(Role.APPROVER, "U0APPROVE1", "april"),
    Person(Role.OTHER_APPROVER, "U0APPROVE2", "otto"),
    Person(Role.ADMIN, ADMIN, "ada"),
    Person(Role.GOVERNANCE, "U0GOVERN1", "grace"),
    Person(Role.UNRELATED, OTHER, "oscar"),
    Person(Role.DEACTIVATED, "U0GONE001", "gone", deactivated=True),
)
PEOPLE: dict[Role, str] = {person.role: person.user_id for person in CAST}
STEP_ONE, STEP_TWO = "step_one", "step_two"
# Tables a refused action must leave exactly as they were (the outbox may gain the refusal itself).
GUARDED_TABLES = tuple(t.name for t in SQLModel.metadata.sorted_tables if t.name != OutboxMessage.__tablename__)


def security_policy_data() -> dict[str, Any]:
    """The default policy with the cast in its groups: every tier but prohibited needs step one (the
    approver) then step two (the other approver); the deactivated account is still listed as an admin."""
    data = yaml.safe_load(default_policy_text())
    data["groups"].update({"admins": [PEOPLE[Role.ADMIN], PEOPLE[Role.DEACTIVATED]],
                           "governance": [PEOPLE[Role.GOVERNANCE]],
                           STEP_ONE: [PEOPLE[Role.APPROVER]], STEP_TWO: [PEOPLE[Role.OTHER_APPROVER]]})
    for tier in ("minimal", "limited", "high"):
        data["tiers"][tier]["approvers"] = [STEP_ONE, STEP_TWO]
    return data


@dataclass(frozen=True)
class Scenario:
    """Ids of everything the matrix acts on, all about one AI system owned by the owner."""

    asset_id: int
    slug: str
    grant_id: int          # the requester's active read access
    request_id: int        # the requester's pending use request: step two approved, step one open
    campaign_id: int       # the open recertification of the asset's grants
    item_id: int           # its item for the requester's grant
    orphan_id: int | None  # the asset's open orphan flag, when asked for


def build_scenario(engine: Engine, *, policy: Policy, now: datetime, orphaned: bool = False) -> Scenario:
    """Build the world through the services, as it would be after a month of use."""
    routing = members(policy.groups)
    asset = make_asset(engine, policy=policy, now=now - timedelta(days=40), kind="system", name="Loan approval",
                       description="Scores loan applications")
    requester, approver, other = PEOPLE[Role.REQUESTER], PEOPLE[Role.APPROVER], PEOPLE[Role.OTHER_APPROVER]
    first = make_request(engine, asset, policy=policy, now=now - timedelta(days=30), members_of=routing,
                         requester=requester, duration_hours=60 * 24)
    for who in (approver, other):
        approve_request(engine, first, who, now=now - timedelta(days=30), policy=policy)
    (grant,) = grants_of(engine, first)
    pending = make_request(engine, asset, policy=policy, now=now - timedelta(days=1), members_of=routing,
                           requester=requester, level="use", justification="Quarterly model validation")
    approve_request(engine, pending, other, now=now - timedelta(hours=20), policy=policy)
    with transaction(engine) as session:
        # Impact analysis asks for a recertification this way; the sweep then starts it.
        audit.append_entry(session=session, actor=OWNER, action=recertification.REQUESTED, subject_type="grant",
                           subject_id=grant.id, subject_slug=asset.slug, now=now, after={"asset": asset.id})
    with transaction(engine) as session:
        campaign = recertification.start_due(session=session, asset_id=asset.id, now=now, policy=policy)
        item = session.exec(select(RecertItem).where(RecertItem.campaign_id == campaign.id)).one()
        orphan_id = None
        if orphaned:
            orphans.flag_orphans(session=session, owner_id=OWNER, reason=orphans.DEACTIVATED, now=now, policy=policy)
            orphan_id = session.exec(select(OrphanedAsset.id).where(OrphanedAsset.asset_id == asset.id)).one()
    return Scenario(asset_id=asset.id, slug=asset.slug, grant_id=grant.id, request_id=pending.id,
                    campaign_id=campaign.id, item_id=item.id, orphan_id=orphan_id)


def guarded_state(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every table but the outbox, in id order: what a refused action must not change."""
    with transaction(engine) as session:
        return {name: sorted(tuple(str(v) for v in row) for row in
                              session.execute(SQLModel.metadata.tables[name].select()).all())
                for name in GUARDED_TABLES}


def load(engine: Engine, model: type, record_id: int) -> Any:
    """One record as stored now."""
    with transaction(engine) as session:
        return session.get(model, record_id)
