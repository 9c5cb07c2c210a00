"""A small, known database for the report's tests (and the README's sample report).

Everything goes through the services, starting at `t0`:

- inventory (live): 2 unclassified datasets, a minimal dataset, a high model, high/limited/minimal
  systems and one unclassified system, and a model card: 9 assets, 4 of them unclassified; one retired
  dataset that the report leaves out;
- reviews: `old-sales` overdue (OWNER), `churn-events` due within 14 days (OTHER), the rest on time;
- documentation gaps: credit-model (technical documentation), loan-approval (four documents) and
  chat-helper (instructions for use);
- decisions 1h, 2h, 3h (denied), 4h, 5h after filing: median 3h, 95th percentile 5h;
- one request that expired undecided;
- two break-glass grants at t0+5h (4 hours each), one reviewed by the owner;
- active grants: 3 unclassified (one of them lasts 24h) + 2 emergency (unclassified), 1 minimal, 1 high.

As of t0+6h nothing is past expiry; as of t0+2d three grants are (the 24h grant and both emergencies),
because no sweep ran in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from tests.factories import (
    ADMIN,
    OTHER,
    OWNER,
    REQUESTER,
    SEC1,
    approve_request,
    classify_system,
    deny_request,
    make_asset,
    make_request,
    retire,
)
from workflows import deadlines, emergency
from workflows.db import transaction
from workflows.enums import AccessLevel
from workflows.inventory import Actor
from workflows.policy import Policy

H = timedelta(hours=1)
CLEAN = 6 * H                       # t0 + CLEAN: every grant within its time
FAILING = timedelta(days=2)         # t0 + FAILING: three grants past expiry
EMERGENCY_1, EMERGENCY_2 = "U0BREAK1", "U0BREAK2"


def seed_report(engine: Engine, *, policy: Policy, t0: datetime) -> dict[str, object]:
    """Fill `engine` with the known data above; returns the assets by slug."""
    made: dict[str, object] = {}

    def asset(slug: str, kind: str, *, created: datetime = t0, owner: str = OWNER, **fields) -> object:
        made[slug] = make_asset(engine, policy=policy, now=created, actor=owner, kind=kind, name=slug,
                                slug=slug, owner_id=owner, **fields)
        return made[slug]

    asset("old-sales", "dataset", created=t0 - timedelta(days=100))
    churn = asset("churn-events", "dataset", created=t0 - timedelta(days=80), owner=OTHER)
    legacy = asset("legacy-clicks", "dataset")
    retire(engine, legacy, policy=policy, now=t0)
    faq_docs = asset("faq-docs", "dataset")
    model = asset("credit-model", "model")
    asset("credit-model-card", "documentation", lineage={"documents": [model.id]},
          details={"doc_type": "model_card", "url": "https://docs.example.com/credit"})
    loan = asset("loan-approval", "system", lineage={"uses": [model.id]})
    classify_system(engine, loan, "high", policy=policy, now=t0)
    chat = asset("chat-helper", "system", owner=OTHER)
    classify_system(engine, chat, "limited", policy=policy, now=t0, actor=OTHER)
    faq = asset("faq-bot", "system", lineage={"uses": [faq_docs.id]})
    classify_system(engine, faq, "minimal", policy=policy, now=t0)
    asset("idea-box", "system")

    # Decisions: 1h and 5h approved, 3h denied (unclassified: the owner decides), 2h on the high model
    # (owner then security), 4h on the minimal dataset.
    quick = make_request(engine, churn, policy=policy, now=t0, requester=REQUESTER)
    approve_request(engine, quick, OTHER, now=t0 + 1 * H)
    denied = make_request(engine, churn, policy=policy, now=t0, requester="U0REQUEST2")
    deny_request(engine, denied, OTHER, now=t0 + 3 * H)
    slow = make_request(engine, churn, policy=policy, now=t0, requester="U0REQUEST3", duration_hours=720)
    approve_request(engine, slow, OTHER, now=t0 + 5 * H)
    high = make_request(engine, model, policy=policy, now=t0, requester=REQUESTER, duration_hours=240)
    approve_request(engine, high, OWNER, now=t0 + H / 2)
    approve_request(engine, high, SEC1, now=t0 + 2 * H)
    minimal = make_request(engine, faq_docs, policy=policy, now=t0, requester=REQUESTER, duration_hours=240)
    approve_request(engine, minimal, OWNER, now=t0 + 4 * H)

    # Filed ten days ago, nobody decided, expired by the sweep after seven.
    stale = make_request(engine, churn, policy=policy, now=t0 - timedelta(days=10), requester="U0REQUEST4")
    with transaction(engine) as session:
        assert deadlines.expire_request(session=session, request_id=stale.id, now=t0 - timedelta(days=2))

    # Break glass twice; the owner confirms the first one.
    for who in (EMERGENCY_1, EMERGENCY_2):
        with transaction(engine) as session:
            grant = emergency.break_glass(session=session, asset_id=churn.id, level=AccessLevel.READ,
                                          justification="Incident 42", requester=Actor(who),
                                          now=t0 + 5 * H, policy=policy)
            made[f"emergency:{who}"] = grant
    with transaction(engine) as session:
        emergency.confirm_emergency(session=session, request_id=made[f"emergency:{EMERGENCY_1}"].request_id,
                                    actor=Actor(OTHER), now=t0 + 5 * H + H / 2, policy=policy)
    made["admin"] = ADMIN
    return made
