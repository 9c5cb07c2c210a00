"""Set-up for the access tests: classified systems, requests and grants made through the services."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from sqlmodel import select

from tests.bot.conftest import GOVERNANCE, TOKEN
from tests.factories import ADMIN, OTHER, OWNER, make_asset
from workflows import access
from workflows.classification import classify_system
from workflows.db import transaction
from workflows.inventory import Actor
from workflows.models import AccessRequest, Asset, Grant
from workflows.policy import Policy
from workflows.risk import RiskAnswers

ANSWERS = {
    "limited": {"transparency_duties": ["interacts_with_people"]},
    "high": {"annex_iii_areas": ["employment"]},
    "prohibited": {"prohibited_practices": ["social_scoring"]},
}


def classify(engine, system: Asset, tier: str, *, policy: Policy, now: datetime) -> None:
    """Classify a system through the questionnaire service, as its owner."""
    with transaction(engine) as session:
        classify_system(session=session, asset_id=system.id, answers=RiskAnswers.model_validate(ANSWERS[tier]),
                        actor=Actor(OWNER), now=now, policy=policy)


def limited_model(engine, *, policy: Policy, now: datetime) -> Asset:
    """A model trained on restricted personal data (owned by ADMIN), used by a limited-risk system."""
    data = make_asset(engine, policy=policy, now=now, kind="dataset", name="Loan history", owner_id=ADMIN,
                      sensitivity="restricted", contains_personal_data=True)
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer",
                       lineage={"trained_on": [data.id]})
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Loan approval",
                        lineage={"uses": [model.id]})
    classify(engine, system, "limited", policy=policy, now=now)
    return reload(engine, model)


def reload(engine, asset: Asset) -> Asset:
    """The asset as stored now."""
    with transaction(engine) as session:
        return session.get(Asset, asset.id)


def members(policy: Policy):
    """Group membership straight from the policy (every member is a user id in these tests)."""
    return lambda group: frozenset(policy.groups.get(group, []))


def file_request(engine, asset: Asset, *, policy: Policy, now: datetime, requester: str = OTHER,
                 level: str = "read", hours: int = 24, justification: str = "Need it") -> AccessRequest:
    """File a request through the service."""
    with transaction(engine) as session:
        return access.request_access(
            session=session, asset_id=asset.id, requester=Actor(requester), now=now, policy=policy,
            members_of=members(policy),
            data=access.RequestInput(level=level, duration_hours=hours, justification=justification))


def grant_access(engine, asset: Asset, *, policy: Policy, now: datetime, grantee: str = OTHER,
                 level: str = "read", hours: int = 24) -> Grant:
    """A request approved by the owner (enough below the limited tier): an active grant."""
    request = file_request(engine, asset, policy=policy, now=now, requester=grantee, level=level, hours=hours)
    with transaction(engine) as session:
        access.approve(session=session, request_id=request.id, approver_id=asset.owner_id, now=now)
        return session.exec(select(Grant).where(Grant.request_id == request.id)).one()


def requests(engine) -> list[AccessRequest]:
    """Every access request, oldest first."""
    with transaction(engine) as session:
        return list(session.exec(select(AccessRequest).order_by(AccessRequest.id)).all())


def grant_row(engine, grant_id: int) -> Grant:
    """A grant as stored now."""
    with transaction(engine) as session:
        return session.get(Grant, grant_id)


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    """The block with this id."""
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def buttons(content: dict[str, Any]) -> list[dict[str, Any]]:
    """Every button in a message or view, accessories included."""
    found = []
    for b in content.get("blocks", []):
        if b.get("type") == "actions":
            found += [e for e in b["elements"] if e.get("type") == "button"]
        if (b.get("accessory") or {}).get("type") == "button":
            found.append(b["accessory"])
    return found


def text_of(content: Any) -> str:
    """All text in a message, as JSON, for `in` checks."""
    return json.dumps(content, ensure_ascii=False)


def slack_accepts(fake, content: dict[str, Any]) -> bool:
    """Post a rendered message to the fake Slack, which enforces Block Kit's limits (and raises on a breach)."""
    WebClient(token=TOKEN, base_url=fake.url).chat_postMessage(channel="D0CHECK01", **content)
    return not fake.last("chat.postMessage").failed


__all__ = ["ADMIN", "GOVERNANCE", "OTHER", "OWNER"]
