"""Recertification: every so often the owner of an asset with active grants confirms who keeps access.

Transitions of a campaign item (one grant of one campaign):

    undecided --Keep-->   kept      (grant must still be active; logs grant.recertified)
    undecided --Revoke--> revoked   (access.revoke_grant, reason "not recertified by owner"; logs grant.revoked)
    kept / revoked: final ("already decided by @x")

- When. `recert_schedule.next_due_at` (indexed) holds each asset's next campaign: first its earliest active
  grant's start plus the tier's `recertify_interval` (policy), then one interval after each period. A grant
  going live gives its asset a provisional row, due after the shortest interval any tier may have, which
  the first check here settles (`workflows/recert_schedule.py`). Impact analysis writes a
  `grant.recertification_requested` decision-log entry and brings the row forward; an entry newer than the
  row's `honoured_seq` marks the campaign as requested. The sweep reads one index range (`assets_due`), so
  its cost does not grow with the number of grants.
- A campaign (`start_due`) is one row per asset and period, with one item per grant active at its start,
  and one DM to the owner (pages of PAGE_SIZE grants, so each stays under Slack's 50 blocks) listing every
  grant with Keep and Revoke, and a Keep all. An orphaned asset's campaign goes to the governance channel.
- Clicks are the asset owner's or an admin's. Each decision is compare-and-set on the item, logged with
  who and when, and redraws the campaign's messages. The campaign completes when every grant is decided
  (a grant that ended meanwhile needs no decision), logging the whole outcome as `recertification.completed`.
- A campaign open ESCALATE_AFTER (14 days) escalates once to the policy's security channel, naming the
  undecided grants (`escalate_at` is cleared when it escalates or completes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from workflows import access, audit, inventory, orphans
from workflows.enums import AssetStatus, GrantStatus
from workflows.errors import Conflict, NotAllowed, NotFound
from workflows.inventory import Actor
from workflows.models import (
    Asset,
    DecisionLogEntry,
    Grant,
    OutboxMessage,
    RecertCampaign,
    RecertItem,
    RecertSchedule,
)
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy

ESCALATE_AFTER = timedelta(days=14)
PAGE_SIZE = 20  # grants per message: two blocks each, plus the header, Keep all and a footer
CAMPAIGN_TEMPLATE = "recert_campaign"
ESCALATION_TEMPLATE = "recert_escalated"
REQUESTED = "grant.recertification_requested"
REVOKE_REASON = "not recertified by owner"
KEEP, REVOKE = "keep", "revoke"
LIVE = (GrantStatus.ACTIVE, GrantStatus.PROVISIONING)
SYSTEM_ACTOR = access.SYSTEM_ACTOR
BATCH = 500


@dataclass(frozen=True)
class CampaignFacts:
    """A campaign with its asset and each item's grant, as they are now."""

    campaign: RecertCampaign
    asset: Asset
    items: list[tuple[RecertItem, Grant]]

    @property
    def undecided(self) -> list[tuple[RecertItem, Grant]]:
        """Items still waiting for Keep or Revoke (a grant that ended meanwhile needs no decision)."""
        return [(i, g) for i, g in self.items if not i.outcome and g.status in LIVE]


# ---- what the sweep asks -------------------------------------------------------------------------------


def assets_due(*, session: Session, now: datetime, limit: int = BATCH) -> list[int]:
    """Asset ids whose recertification is due or was requested, earliest first (one index range)."""
    return list(session.exec(select(RecertSchedule.asset_id).where(RecertSchedule.next_due_at <= now)
                             .order_by(col(RecertSchedule.next_due_at)).limit(limit)).all())


def escalations_due(*, session: Session, now: datetime, policy: Policy, limit: int = BATCH) -> list[int]:
    """Ids of open campaigns past their escalation time (none while the policy names no security channel)."""
    if not policy.channels.security:
        return []
    return list(session.exec(select(RecertCampaign.id).where(RecertCampaign.escalate_at <= now)
                             .order_by(col(RecertCampaign.escalate_at)).limit(limit)).all())


# ---- the due work ----------------------------------------------------------------------------------


def start_due(*, session: Session, asset_id: int, now: datetime, policy: Policy) -> RecertCampaign | None:
    """Schedule the asset, and start its campaign if it is due or requested; None when nothing started."""
    asset = session.exec(select(Asset).where(Asset.id == asset_id).with_for_update()).first()
    if asset is None:
        return None
    grants = _live_grants(session, asset_id)
    schedule = _schedule(session, asset, grants, policy)
    if asset.status == AssetStatus.RETIRED or not grants:
        session.delete(schedule)  # scheduled again from its next grant's start
        return None
    requested = session.exec(
        select(func.max(DecisionLogEntry.seq)).join(Grant, DecisionLogEntry.subject_id == Grant.id)
        .where(DecisionLogEntry.action == REQUESTED, DecisionLogEntry.subject_type == "grant",
               Grant.asset_id == asset_id, DecisionLogEntry.seq > schedule.honoured_seq)).one()
    if requested is not None:
        schedule.honoured_seq = requested
    due = schedule.next_due_at <= now
    if not due and requested is None:
        session.add(schedule)
        return None
    interval = policy.recertify_interval(asset.effective_tier)
    period = schedule.next_due_at if due else now
    following = period + interval
    schedule.next_due_at = following if following > now else now + interval
    session.add(schedule)
    if _open_campaign(session, asset_id) is not None:
        return None  # the open campaign is still asking; a second would only repeat it
    campaign = RecertCampaign(asset_id=asset_id, owner_id=asset.owner_id, period=period, started_at=now,
                              escalate_at=now + ESCALATE_AFTER)
    try:
        with session.begin_nested():
            session.add(campaign)
            session.flush()
    except IntegrityError:
        return None  # another sweep started this period's campaign
    for grant in grants:
        session.add(RecertItem(campaign_id=campaign.id, grant_id=grant.id))
    session.flush()
    audit.append_entry(session=session, actor=SYSTEM_ACTOR, action="recertification.started",
                       subject_type="asset", subject_id=asset.id, subject_slug=asset.slug, now=now,
                       after={"campaign": campaign.id, "period": period.isoformat(), "owner": asset.owner_id,
                              "grants": [g.id for g in grants], "requested": requested is not None})
    _send(session, campaign, asset, len(grants), now, policy)
    return campaign


def escalate(*, session: Session, campaign_id: int, now: datetime, policy: Policy) -> bool:
    """Post the undecided grants of an overdue campaign to the security channel, once."""
    campaign = session.exec(select(RecertCampaign).where(RecertCampaign.id == campaign_id).with_for_update()).first()
    channel = policy.channels.security
    if campaign is None or campaign.escalate_at is None or campaign.escalate_at > now or not channel:
        return False
    facts = campaign_facts(session=session, campaign_id=campaign_id)
    undecided = facts.undecided
    campaign.escalate_at = None
    session.add(campaign)
    if not undecided:
        _complete(session, facts, now)
        return False
    campaign.escalated_at = now
    audit.append_entry(session=session, actor=SYSTEM_ACTOR, action="recertification.escalated",
                       subject_type="asset", subject_id=facts.asset.id, subject_slug=facts.asset.slug, now=now,
                       after={"campaign": campaign.id, "channel": channel, "owner": facts.asset.owner_id,
                              "undecided": [g.id for _, g in undecided]})
    add_message(session=session, method=OutboxMethod.POST, channel=channel, now=now, topic=f"recert:{campaign.id}",
                payload={"template": ESCALATION_TEMPLATE, "campaign_id": campaign.id,
                         "grant_ids": [g.id for _, g in undecided], "as_of": now.isoformat()})
    return True


# ---- the buttons ---------------------------------------------------------------------------------------


def keep(*, session: Session, item_id: int, actor: Actor, now: datetime, policy: Policy) -> RecertItem:
    """The owner (or an admin) keeps one grant; refused if the grant has already ended."""
    item, grant, facts = _decidable(session, item_id, actor, policy)
    if grant.status not in LIVE:
        ended = "been revoked" if grant.status == GrantStatus.REVOKED else "expired"
        raise Conflict(f"<@{grant.grantee_id}>'s access has already {ended}; it cannot be kept.")
    _decide(session, item, KEEP, actor, now)
    audit.append_entry(session=session, actor=actor.user_id, action="grant.recertified", subject_type="grant",
                       subject_id=grant.id, subject_slug=facts.asset.slug, now=now,
                       after={"campaign": item.campaign_id, "grantee": grant.grantee_id, "level": grant.level.value,
                              "decision": KEEP})
    _after_decision(session, item.campaign_id, now)
    return item


def revoke(*, session: Session, item_id: int, actor: Actor, now: datetime, policy: Policy) -> RecertItem:
    """The owner (or an admin) revokes one grant through the access revocation."""
    item, grant, _ = _decidable(session, item_id, actor, policy)
    _decide(session, item, REVOKE, actor, now)
    access.revoke_grant(session=session, grant_id=grant.id, actor=actor, reason=REVOKE_REASON, now=now,
                        policy=policy)
    _after_decision(session, item.campaign_id, now)
    return item


def keep_all(*, session: Session, campaign_id: int, actor: Actor, now: datetime, policy: Policy) -> list[RecertItem]:
    """Keep every grant of the campaign that is undecided and still active."""
    facts = _campaign_for_decision(session, campaign_id, actor, policy)
    kept = []
    for item, _ in facts.undecided:
        kept.append(keep(session=session, item_id=item.id, actor=actor, now=now, policy=policy))
    if not kept:
        raise Conflict("Every grant of this recertification is already decided.")
    return kept


# ---- reading, for the messages ------------------------------------------------------------------------


def campaign_facts(*, session: Session, campaign_id: int) -> CampaignFacts:
    """A campaign, its asset and its items with their grants, in grant order."""
    campaign = session.get(RecertCampaign, campaign_id)
    asset = session.get(Asset, campaign.asset_id) if campaign else None
    if campaign is None or asset is None:
        raise NotFound(f"No recertification has id {campaign_id}.")
    rows = session.exec(select(RecertItem, Grant).join(Grant, Grant.id == RecertItem.grant_id)
                        .where(RecertItem.campaign_id == campaign_id).order_by(col(RecertItem.id))).all()
    return CampaignFacts(campaign=campaign, asset=asset, items=[(i, g) for i, g in rows])


def schedule_of(*, session: Session, asset_id: int) -> RecertSchedule | None:
    """The asset's recertification schedule, if it has one."""
    return session.get(RecertSchedule, asset_id)


# ---- internals -----------------------------------------------------------------------------------------


def _live_grants(session: Session, asset_id: int) -> list[Grant]:
    return list(session.exec(select(Grant).where(Grant.asset_id == asset_id,
                                                 col(Grant.status).in_([s.value for s in LIVE]))
                             .order_by(col(Grant.granted_at), col(Grant.id))).all())


def _schedule(session: Session, asset: Asset, grants: list[Grant], policy: Policy) -> RecertSchedule:
    # A provisional row (or none) is settled here: first due one interval after the earliest live grant.
    row = session.exec(select(RecertSchedule).where(RecertSchedule.asset_id == asset.id).with_for_update()).first()
    if row is None or row.provisional:
        first = min((g.granted_at for g in grants), default=None)
        start = first if first is not None else asset.created_at
        row = row or RecertSchedule(asset_id=asset.id, honoured_seq=0)
        row.next_due_at, row.provisional = start + policy.recertify_interval(asset.effective_tier), False
        session.add(row)
        session.flush()
    return row


def _open_campaign(session: Session, asset_id: int) -> RecertCampaign | None:
    return session.exec(select(RecertCampaign).where(RecertCampaign.asset_id == asset_id,
                                                     col(RecertCampaign.completed_at).is_(None))).first()


def _send(session: Session, campaign: RecertCampaign, asset: Asset, count: int, now: datetime,
          policy: Policy) -> None:
    # A gone owner cannot answer: their campaign goes to the governance channel, where someone can take over.
    to_governance = orphans.is_orphaned(session=session, asset_id=asset.id) and bool(policy.channels.governance)
    pages = max(1, -(-count // PAGE_SIZE))
    for page in range(pages):
        payload = {"template": CAMPAIGN_TEMPLATE, "campaign_id": campaign.id, "page": page, "pages": pages}
        if to_governance:
            add_message(session=session, method=OutboxMethod.POST, channel=policy.channels.governance, now=now,
                        topic=f"recert:{campaign.id}", payload=payload)
        else:
            add_message(session=session, method=OutboxMethod.DM, user=asset.owner_id, now=now,
                        topic=f"recert:{campaign.id}", payload=payload)


def _campaign_for_decision(session: Session, campaign_id: int, actor: Actor, policy: Policy) -> CampaignFacts:
    campaign = session.exec(select(RecertCampaign).where(RecertCampaign.id == campaign_id).with_for_update()).first()
    if campaign is None:
        raise NotFound(f"No recertification has id {campaign_id}.")
    facts = campaign_facts(session=session, campaign_id=campaign_id)
    if not inventory.can_edit(asset=facts.asset, actor=actor, policy=policy):
        raise NotAllowed(f"Only the owner of {facts.asset.slug} or a Steward admin can recertify its access.")
    return facts


def _decidable(session: Session, item_id: int, actor: Actor, policy: Policy) -> tuple[RecertItem, Grant, CampaignFacts]:
    item = session.get(RecertItem, item_id)
    if item is None:
        raise NotFound(f"No recertification item has id {item_id}.")
    facts = _campaign_for_decision(session, item.campaign_id, actor, policy)
    session.refresh(item)
    grant = session.get(Grant, item.grant_id)
    if item.outcome:
        raise Conflict(f"<@{grant.grantee_id}>'s access was already {'kept' if item.outcome == KEEP else 'revoked'}"
                       f" by <@{item.decided_by}>.")
    return item, grant, facts


def _decide(session: Session, item: RecertItem, outcome: str, actor: Actor, now: datetime) -> None:
    moved = session.execute(update(RecertItem).where(RecertItem.id == item.id, RecertItem.outcome == "")
                            .values(outcome=outcome, decided_by=actor.user_id, decided_at=now)).rowcount
    if moved != 1:
        raise Conflict("Someone decided this grant a moment ago.")
    session.refresh(item)


def _after_decision(session: Session, campaign_id: int, now: datetime) -> None:
    facts = campaign_facts(session=session, campaign_id=campaign_id)
    if not facts.undecided and facts.campaign.completed_at is None:
        _complete(session, facts, now)
    _redraw(session, campaign_id, now)


def _complete(session: Session, facts: CampaignFacts, now: datetime) -> None:
    campaign = facts.campaign
    campaign.completed_at, campaign.escalate_at = now, None
    session.add(campaign)
    decisions = [{"grant": g.id, "grantee": g.grantee_id, "level": g.level.value,
                  "outcome": i.outcome or g.status.value, "by": i.decided_by,
                  "at": i.decided_at.isoformat() if i.decided_at else None} for i, g in facts.items]
    audit.append_entry(session=session, actor=SYSTEM_ACTOR, action="recertification.completed",
                       subject_type="asset", subject_id=facts.asset.id, subject_slug=facts.asset.slug, now=now,
                       after={"campaign": campaign.id, "period": campaign.period.isoformat(), "decisions": decisions})


def _redraw(session: Session, campaign_id: int, now: datetime) -> None:
    originals = session.exec(select(OutboxMessage).where(OutboxMessage.topic == f"recert:{campaign_id}",
                                                         col(OutboxMessage.method).in_([OutboxMethod.DM,
                                                                                        OutboxMethod.POST]))
                             .order_by(col(OutboxMessage.id))).all()
    for original in originals:
        if (original.payload or {}).get("template") == CAMPAIGN_TEMPLATE:
            add_message(session=session, method=OutboxMethod.UPDATE, updates_id=original.id, now=now,
                        topic=original.topic, payload={"template": "redraw"})
