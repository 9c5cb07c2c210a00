"""Orphaned assets: assets whose owner was deactivated or left the workspace.

`flag_orphans` runs when Slack says an owner is gone (the `user_change` event with deleted=true, or
users.info during the sweep's review scheduling answering deleted or user_not_found). Each of their
assets that is not retired gets an open `orphaned_asset` row, a decision-log entry, and one message
with a **Take ownership** button: in the asset's team channel when its team names a Slack channel,
else in the policy's governance channel (nowhere when there is neither). Flagging twice is a no-op.

`take_ownership` (any person; the edge refuses bots) moves the asset to whoever clicked, closes the flag
with compare-and-set, logs `asset.ownership_taken` and redraws the message. An orphaned asset stays in
the reviews: its nudges and recertifications go to the governance channel instead of the gone owner.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from workflows import audit
from workflows.enums import AssetStatus
from workflows.errors import Conflict, NotFound
from workflows.inventory import Actor
from workflows.models import Asset, OrphanedAsset, OutboxMessage
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy

ORPHAN_TEMPLATE = "asset_orphaned"
SYSTEM_ACTOR = "steward"
DEACTIVATED, NOT_FOUND = "deactivated", "user_not_found"
# A team field that is a Slack channel: an id, or the <#C…|name> form Slack pastes.
_CHANNEL = re.compile(r"^<?#?([CG][A-Z0-9]{6,})(?:\|[^>]*)?>?$")


def team_channel(team: str) -> str:
    """The Slack channel id an asset's team field names, or "" when it names none."""
    match = _CHANNEL.match((team or "").strip())
    return match.group(1) if match else ""


def flag_orphans(*, session: Session, owner_id: str, reason: str, now: datetime, policy: Policy) -> list[int]:
    """Flag every live asset of a gone owner that is not flagged yet; returns the newly flagged asset ids."""
    assets = session.exec(select(Asset).where(Asset.owner_id == owner_id, Asset.status != AssetStatus.RETIRED)
                          .order_by(col(Asset.id)).with_for_update()).all()
    flagged = []
    for asset in assets:
        if is_orphaned(session=session, asset_id=asset.id):
            continue
        row = OrphanedAsset(asset_id=asset.id, former_owner_id=owner_id, flagged_at=now, reason=reason)
        session.add(row)
        session.flush()
        channel = team_channel(asset.team) or policy.channels.governance
        audit.append_entry(session=session, actor=SYSTEM_ACTOR, action="asset.orphaned", subject_type="asset",
                           subject_id=asset.id, subject_slug=asset.slug, now=now,
                           after={"former_owner": owner_id, "reason": reason, "channel": channel})
        if channel:
            add_message(session=session, method=OutboxMethod.POST, channel=channel, now=now,
                        topic=f"orphan:{asset.id}",
                        payload={"template": ORPHAN_TEMPLATE, "orphan_id": row.id, "asset_id": asset.id})
        flagged.append(asset.id)
    return flagged


def is_orphaned(*, session: Session, asset_id: int) -> bool:
    """Whether the asset has an open orphan flag."""
    return session.exec(select(OrphanedAsset.id).where(OrphanedAsset.asset_id == asset_id,
                                                       col(OrphanedAsset.open).is_(True))).first() is not None


def owner_is_orphaned(*, session: Session, owner_id: str) -> bool:
    """Whether some asset of this (former) owner is flagged as orphaned: their messages go elsewhere."""
    return session.exec(select(OrphanedAsset.id).where(OrphanedAsset.former_owner_id == owner_id,
                                                       col(OrphanedAsset.open).is_(True))).first() is not None


def take_ownership(*, session: Session, orphan_id: int, actor: Actor, now: datetime) -> Asset:
    """Make the person who clicked the owner of an orphaned asset; the first click wins."""
    row = session.get(OrphanedAsset, orphan_id)
    if row is None:
        raise NotFound(f"No orphaned asset has id {orphan_id}.")
    moved = session.execute(update(OrphanedAsset).where(OrphanedAsset.id == orphan_id,
                                                        col(OrphanedAsset.open).is_(True))
                            .values(open=False, taken_by=actor.user_id, taken_at=now)).rowcount
    session.refresh(row)
    if moved != 1:
        raise Conflict(f"<@{row.taken_by}> already took ownership of this asset." if row.taken_by
                       else "This asset is no longer orphaned.")
    asset = session.exec(select(Asset).where(Asset.id == row.asset_id).with_for_update()).one()
    if asset.status == AssetStatus.RETIRED:
        raise Conflict(f"{asset.slug} is retired; nobody needs to own it.")
    before = asset.owner_id
    asset.owner_id = actor.user_id
    session.add(asset)
    audit.append_entry(session=session, actor=actor.user_id, action="asset.ownership_taken", subject_type="asset",
                       subject_id=asset.id, subject_slug=asset.slug, now=now,
                       before={"owner_id": before}, after={"owner_id": actor.user_id})
    for message in session.exec(select(OutboxMessage).where(OutboxMessage.topic == f"orphan:{asset.id}",
                                                            OutboxMessage.method == OutboxMethod.POST)).all():
        add_message(session=session, method=OutboxMethod.UPDATE, updates_id=message.id, now=now,
                    topic=message.topic, payload={"template": "redraw"})
    return asset


def orphan(*, session: Session, orphan_id: int) -> OrphanedAsset | None:
    """One orphan flag, open or taken."""
    return session.get(OrphanedAsset, orphan_id)
