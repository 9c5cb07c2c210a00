"""Asset reviews: the owners' weekly nudge, the review buttons, and the overdue escalation.

Each asset's due date is `Asset.next_review_due` (set by inventory.schedule_review from the tier's
interval). Its reminder window opens REVIEW_WINDOW (14 days) before it.

- Nudges are batched per owner in `review_nudge`: at most one a NUDGE_EVERY (7 days), at 09:00 on a
  weekday in the owner's Slack timezone. The sweep finds assets entering the window through the indexed
  `next_review_due` and schedules their owners (`schedule_nudge`); it then finds owners whose indexed
  `next_nudge_at` has come (`send_nudge`). Sending writes one DM to the outbox and clears
  `next_nudge_at`; `last_nudged_at` (and the decision-log entry) is recorded by the delivery hook
  `record_nudge_receipt` only once Slack accepted the message. The outbox sends a row at most once, and
  the next nudge is scheduled from the later of when the last was written and when it was accepted, so
  a slow delivery never lets a second nudge into the same week.
- Buttons (owner or admin, never on a retired asset): Still accurate (`record_review`), Snooze
  (`snooze_review`, at most MAX_SNOOZES per review period) and Retire (`retire_reviewed`, which ends
  every active grant). Each logs to the decision log and redraws the nudge.
- Reviews overdue by ESCALATE_AFTER (14 days) go to the policy's governance channel in one message
  (`escalate_overdue`), once per asset per overdue period (`asset_review.escalated_for` holds the due
  date that was escalated; a review or snooze starts a new period). The mark is written with the
  message, and the outbox delivers that message exactly once.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from workflows import access, audit, inventory, orphans
from workflows.enums import AssetStatus, DocType, GrantStatus, RiskTier
from workflows.errors import Conflict, InvalidInput, NotAllowed, NotFound
from workflows.inventory import REVIEW_WINDOW, Actor
from workflows.models import Asset, AssetReview, Grant, OutboxMessage, ReviewNudge
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy

NUDGE_EVERY = timedelta(days=7)
NUDGE_HOUR = time(9, 0)
ESCALATE_AFTER = timedelta(days=14)
SNOOZE = timedelta(days=7)
MAX_SNOOZES = 2
NUDGE_TEMPLATE = "review_nudge"
OVERDUE_TEMPLATE = "reviews_overdue"
DOC_TIERS = frozenset({RiskTier.HIGH, RiskTier.LIMITED})
SYSTEM_ACTOR = access.SYSTEM_ACTOR
BATCH = 500

# What the last click on an asset's review did (asset_review.last_action), shown when the nudge is redrawn.
REVIEWED, SNOOZED, RETIRED = "reviewed", "snoozed", "retired"


# ---- when --------------------------------------------------------------------------------------------


def next_nudge_time(after: datetime, tz: str) -> datetime:
    """The first weekday 09:00 in `tz` at or after `after`, in UTC (an unknown zone counts as UTC)."""
    zone = _zone(tz)
    local = after.astimezone(zone)
    day = local.date()
    while True:
        candidate = datetime.combine(day, NUDGE_HOUR, tzinfo=zone)
        if candidate >= local and candidate.weekday() < 5:
            return candidate.astimezone(after.tzinfo)
        day += timedelta(days=1)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# ---- what the sweep asks -------------------------------------------------------------------------------


def assets_to_schedule(*, session: Session, now: datetime, limit: int = BATCH) -> list[int]:
    """One asset id per owner who has a review in the window but no nudge scheduled (read by index)."""
    rows = session.exec(
        select(Asset.id, Asset.owner_id)
        .outerjoin(ReviewNudge, ReviewNudge.owner_id == Asset.owner_id)
        .where(col(Asset.next_review_due).is_not(None), Asset.next_review_due <= now + REVIEW_WINDOW,
               Asset.status != AssetStatus.RETIRED,
               or_(col(ReviewNudge.id).is_(None), col(ReviewNudge.next_nudge_at).is_(None)))
        .order_by(col(Asset.next_review_due)).limit(limit * 4)
    ).all()
    picked: dict[str, int] = {}
    for asset_id, owner_id in rows:
        picked.setdefault(owner_id, asset_id)
    return list(picked.values())[:limit]


def due_nudge_ids(*, session: Session, now: datetime, limit: int = BATCH) -> list[int]:
    """Ids of review_nudge rows whose nudge time has come (read by index)."""
    return list(session.exec(
        select(ReviewNudge.id).where(ReviewNudge.next_nudge_at <= now)
        .order_by(col(ReviewNudge.next_nudge_at)).limit(limit)
    ).all())


def escalation_due(*, session: Session, now: datetime, policy: Policy) -> bool:
    """Whether some review is overdue by ESCALATE_AFTER and not yet escalated for this due date."""
    return bool(policy.channels.governance) and bool(_unescalated(session, now, limit=1))


def owner_and_cached_tz(*, session: Session, asset_id: int) -> tuple[str, str | None]:
    """The owner of an asset and their cached Slack timezone (None when not looked up yet)."""
    asset = session.get(Asset, asset_id)
    if asset is None:
        raise NotFound(f"No asset has id {asset_id}.")
    row = session.exec(select(ReviewNudge).where(ReviewNudge.owner_id == asset.owner_id)).first()
    return asset.owner_id, (row.tz if row is not None else None)


# ---- the due work ----------------------------------------------------------------------------------


def schedule_nudge(*, session: Session, asset_id: int, now: datetime, tz: str | None = None) -> bool:
    """Schedule the nudge of this asset's owner if they have reviews due and none is scheduled."""
    asset = session.get(Asset, asset_id)
    if asset is None:
        return False
    row = _nudge_row(session, asset.owner_id, tz)
    if tz:
        row.tz = tz
    session.add(row)
    if row.next_nudge_at is not None or not inventory.reviews_due(session=session, owner_id=row.owner_id, now=now):
        return False
    previous = max((t for t in (row.queued_at, row.last_nudged_at) if t is not None), default=None)
    start = max(now, previous + NUDGE_EVERY) if previous else now
    row.next_nudge_at = next_nudge_time(start, row.tz)
    session.add(row)
    return True


def send_nudge(*, session: Session, nudge_id: int, now: datetime, policy: Policy) -> OutboxMessage | None:
    """Write the owner's one DM listing every review due within the window or overdue; None if nothing."""
    row = session.exec(select(ReviewNudge).where(ReviewNudge.id == nudge_id).with_for_update()).first()
    if row is None or row.next_nudge_at is None or row.next_nudge_at > now:
        return None
    row.next_nudge_at = None
    session.add(row)
    due = inventory.reviews_due(session=session, owner_id=row.owner_id, now=now)
    if not due:
        return None
    # A gone owner's reviews go to the governance channel instead, so orphaned assets stay reviewed.
    to_governance = bool(policy.channels.governance) and orphans.owner_is_orphaned(session=session,
                                                                                   owner_id=row.owner_id)
    where = ({"method": OutboxMethod.POST, "channel": policy.channels.governance} if to_governance
             else {"method": OutboxMethod.DM, "user": row.owner_id})
    message = add_message(session=session, **where, now=now,
                          topic=f"review_nudge:{row.owner_id}",
                          payload={"template": NUDGE_TEMPLATE, "owner_id": row.owner_id,
                                   "asset_ids": [a.id for a in due], "as_of": now.isoformat(),
                                   "missing_docs": _gaps(session, due, policy)})
    # The rows carry their own id, so a click can redraw exactly the message it came from.
    message.payload = {**message.payload, "message_id": message.id}
    session.add(message)
    row.queued_at, row.outbox_id = now, message.id
    session.add(row)
    return message


def record_nudge_receipt(*, session: Session, message: OutboxMessage) -> bool:
    """Delivery hook: once Slack accepted a nudge, record it on the owner's row and in the decision log."""
    if (message.payload or {}).get("template") != NUDGE_TEMPLATE or not message.sent_ts:
        return False
    row = session.exec(select(ReviewNudge).where(ReviewNudge.owner_id == message.payload.get("owner_id"))
                       .with_for_update()).first()
    if row is None:
        return False
    row.last_nudged_at = message.sent_at
    session.add(row)
    ids = list(message.payload.get("asset_ids", []))
    slugs = list(session.exec(select(Asset.slug).where(col(Asset.id).in_(ids)).order_by(Asset.slug)).all())
    audit.append_entry(session=session, actor=SYSTEM_ACTOR, action="review.nudged", subject_type="review_nudge",
                       subject_id=row.id, subject_slug="", now=message.sent_at,
                       after={"owner": row.owner_id, "assets": slugs, "outbox_id": message.id})
    return True


def escalate_overdue(*, session: Session, now: datetime, policy: Policy) -> list[int]:
    """Post one message to the governance channel listing newly overdue reviews; returns the asset ids."""
    channel = policy.channels.governance
    if not channel:
        return []
    assets = _unescalated(session, now, limit=BATCH)
    if not assets:
        return []
    for asset in assets:
        state = _state(session, asset.id)
        state.escalated_for, state.escalated_at = asset.next_review_due, now
        session.add(state)
        audit.append_entry(session=session, actor=SYSTEM_ACTOR, action="review.escalated", subject_type="asset",
                           subject_id=asset.id, subject_slug=asset.slug, now=now,
                           after={"owner": asset.owner_id, "due": asset.next_review_due.isoformat(),
                                  "overdue_days": (now - asset.next_review_due).days, "channel": channel})
    add_message(session=session, method=OutboxMethod.POST, channel=channel, now=now, topic="reviews_overdue",
                payload={"template": OVERDUE_TEMPLATE, "asset_ids": [a.id for a in assets],
                         "as_of": now.isoformat()})
    return [a.id for a in assets]


# ---- the buttons ---------------------------------------------------------------------------------------


def record_review(*, session: Session, asset_id: int, actor: Actor, now: datetime, policy: Policy,
                  message_id: int | None = None, via: str = "still_accurate") -> Asset:
    """The owner (or an admin) confirms the record: the review date moves and snoozes start again."""
    asset = _reviewable(session, asset_id, actor, policy)
    before = asset.next_review_due
    asset.last_reviewed_at = now
    inventory.schedule_review(asset, policy)
    session.add(asset)
    state = _state(session, asset.id)
    state.snoozes = 0
    _mark(state, REVIEWED, actor, now)
    audit.append_entry(session=session, actor=actor.user_id, action="asset.reviewed", subject_type="asset",
                       subject_id=asset.id, subject_slug=asset.slug, now=now,
                       before={"next_review_due": _iso(before)},
                       after={"next_review_due": _iso(asset.next_review_due), "via": via})
    redraw_nudges(session=session, asset=asset, now=now, message_id=message_id)
    return asset


def snooze_review(*, session: Session, asset_id: int, actor: Actor, now: datetime, policy: Policy,
                  message_id: int | None = None) -> Asset:
    """Delay the review by SNOOZE, at most MAX_SNOOZES times per review period."""
    asset = _reviewable(session, asset_id, actor, policy)
    state = _state(session, asset.id)
    if state.snoozes >= MAX_SNOOZES:
        raise InvalidInput(f"The review of {asset.slug} was already snoozed {MAX_SNOOZES} times. "
                           "Review it now: Still accurate, Update or Retire.")
    if asset.next_review_due is None:
        raise Conflict(f"{asset.slug} has no review scheduled.")
    before = asset.next_review_due
    asset.next_review_due = before + SNOOZE
    session.add(asset)
    state.snoozes += 1
    _mark(state, SNOOZED, actor, now)
    audit.append_entry(session=session, actor=actor.user_id, action="asset.review_snoozed", subject_type="asset",
                       subject_id=asset.id, subject_slug=asset.slug, now=now,
                       before={"next_review_due": _iso(before)},
                       after={"next_review_due": _iso(asset.next_review_due), "snoozes": state.snoozes})
    redraw_nudges(session=session, asset=asset, now=now, message_id=message_id)
    return asset


def retire_reviewed(*, session: Session, asset_id: int, actor: Actor, now: datetime, policy: Policy,
                    message_id: int | None = None) -> tuple[Asset, list[Grant]]:
    """Retire the asset from its review and end every active grant on it."""
    _reviewable(session, asset_id, actor, policy)
    asset = inventory.retire_asset(session=session, asset_id=asset_id, actor=actor, now=now, policy=policy,
                                   reason="retired at review")
    grant_ids = session.exec(select(Grant.id).where(Grant.asset_id == asset_id,
                                                    Grant.status == GrantStatus.ACTIVE)).all()
    ended = [access.revoke_grant(session=session, grant_id=grant_id, actor=actor, reason="asset retired",
                                 now=now, policy=policy) for grant_id in grant_ids]
    state = _state(session, asset.id)
    _mark(state, RETIRED, actor, now)
    redraw_nudges(session=session, asset=asset, now=now, message_id=message_id)
    return asset, ended


def ensure_reviewable(*, session: Session, asset_id: int, actor: Actor, policy: Policy) -> Asset:
    """The asset, if the actor may review it now (owner or admin, not retired); for opening modals."""
    return _reviewable(session, asset_id, actor, policy, lock=False)


def redraw_nudges(*, session: Session, asset: Asset, now: datetime, message_id: int | None = None) -> list[int]:
    """Queue a chat.update of the nudge messages listing this asset (the clicked one and the owner's latest)."""
    wanted = {message_id} if message_id else set()
    latest = session.exec(select(ReviewNudge.outbox_id).where(ReviewNudge.owner_id == asset.owner_id)).first()
    if latest:
        wanted.add(latest)
    queued = []
    for original in session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(wanted))).all():
        payload = original.payload or {}
        if payload.get("template") != NUDGE_TEMPLATE or asset.id not in payload.get("asset_ids", []):
            continue
        add_message(session=session, method=OutboxMethod.UPDATE, updates_id=original.id, now=now,
                    topic=original.topic, payload={"template": "redraw"})
        queued.append(original.id)
    return queued


# ---- reading, for the messages ------------------------------------------------------------------------


def missing_docs(*, session: Session, asset: Asset, policy: Policy) -> list[DocType]:
    """Documentation types the policy requires of a high or limited tier asset that it lacks."""
    if asset.effective_tier not in DOC_TIERS or asset.status == AssetStatus.RETIRED:
        return []
    card = inventory.describe_asset(session=session, asset=asset, policy=policy)
    return [doc_type for doc_type, doc in card.docs if doc is None]


def review_state(*, session: Session, asset_id: int) -> AssetReview | None:
    """The asset's review bookkeeping, if it has any."""
    return session.get(AssetReview, asset_id)


# ---- internals -----------------------------------------------------------------------------------------


def _reviewable(session: Session, asset_id: int, actor: Actor, policy: Policy, *, lock: bool = True) -> Asset:
    query = select(Asset).where(Asset.id == asset_id)
    asset = session.exec(query.with_for_update() if lock else query).first()
    if asset is None:
        raise NotFound(f"No asset has id {asset_id}.")
    if not inventory.can_edit(asset=asset, actor=actor, policy=policy):
        raise NotAllowed(f"Only the owner of {asset.slug} or a Steward admin can review it.")
    if asset.status == AssetStatus.RETIRED:
        raise Conflict(f"{asset.slug} is retired; retired assets are no longer reviewed.")
    return asset


def _nudge_row(session: Session, owner_id: str, tz: str | None) -> ReviewNudge:
    query = select(ReviewNudge).where(ReviewNudge.owner_id == owner_id).with_for_update()
    row = session.exec(query).first()
    if row is not None:
        return row
    try:
        # The unique owner_id is the referee if two sweeps schedule the same owner at once.
        with session.begin_nested():
            row = ReviewNudge(owner_id=owner_id, tz=tz or "UTC")
            session.add(row)
            session.flush()
        return row
    except IntegrityError:
        return session.exec(query).one()


def _state(session: Session, asset_id: int) -> AssetReview:
    state = session.get(AssetReview, asset_id)
    if state is None:
        state = AssetReview(asset_id=asset_id)
        session.add(state)
        session.flush()
    return state


def _mark(state: AssetReview, action: str, actor: Actor, now: datetime) -> None:
    state.last_action, state.last_action_by, state.last_action_at = action, actor.user_id, now


def _unescalated(session: Session, now: datetime, *, limit: int) -> list[Asset]:
    return list(session.exec(
        select(Asset).outerjoin(AssetReview, AssetReview.asset_id == Asset.id)
        .where(col(Asset.next_review_due).is_not(None), Asset.next_review_due <= now - ESCALATE_AFTER,
               Asset.status != AssetStatus.RETIRED,
               or_(col(AssetReview.escalated_for).is_(None),
                   and_(col(AssetReview.escalated_for).is_not(None),
                        AssetReview.escalated_for != Asset.next_review_due)))
        .order_by(col(Asset.next_review_due), col(Asset.id)).limit(limit)
    ).all())


def _gaps(session: Session, assets: list[Asset], policy: Policy) -> dict[str, list[str]]:
    gaps = {}
    for asset in assets:
        missing = missing_docs(session=session, asset=asset, policy=policy)
        if missing:
            gaps[str(asset.id)] = [d.value for d in missing]
    return gaps


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
