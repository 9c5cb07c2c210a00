"""Break-glass access: granted at once for a few hours, announced to security, reviewed by the owner after."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from workflows import access
from workflows.enums import AccessLevel, GrantStatus, RequestStatus
from workflows.errors import InvalidInput, NotAllowed
from workflows.inventory import Actor, get_asset
from workflows.models import AccessRequest, Decision, Grant
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy

CONFIRM = "confirm"


def break_glass(*, session: Session, asset_id: int, level: AccessLevel, justification: str, requester: Actor,
                now: datetime, policy: Policy, reply_channel: str = "") -> Grant:
    """Grant emergency access now (at most the policy's hours), alert security and ask the owner to review."""
    asset = get_asset(session=session, asset_id=asset_id)
    access.lock_asset_for_filing(session, asset.id)
    data = access.parse_request_input({"level": level, "duration_hours": policy.emergency.max_hours,
                                       "justification": justification, "emergency": True})
    access.check_requestable(session=session, asset=asset, data=data, requester_id=requester.user_id,
                             policy=policy)
    request = AccessRequest(asset_id=asset.id, requester_id=requester.user_id, level=level,
                            duration_hours=data.duration_hours, justification=data.justification, emergency=True,
                            created_at=now)
    session.add(request)
    session.flush()
    access.log_request(session, request, "access.emergency_requested", actor=requester.user_id, now=now,
                       after={"asset": asset.slug, "level": level.value, "justification": data.justification,
                              "hours": data.duration_hours})
    # The receipt below says what happened; a second "approved" DM would only repeat it.
    grant = access.approve_without_steps(session, request, approver_id=requester.user_id, now=now,
                                         note="break-glass", tell_requester=False, policy=policy)
    topic = f"request:{request.id}"
    if policy.channels.security:
        add_message(session=session, method=OutboxMethod.POST, channel=policy.channels.security, now=now,
                    topic=topic, payload={"template": "emergency_alert", "request_id": request.id})
    add_message(session=session, method=OutboxMethod.DM, user=asset.owner_id, now=now, topic=topic,
                payload={"template": "emergency_review", "request_id": request.id, "approver": asset.owner_id})
    add_message(session=session, method=OutboxMethod.EPHEMERAL, channel=reply_channel, user=requester.user_id,
                now=now, topic=topic, payload={"template": "request_filed", "request_id": request.id})
    return grant


def confirm_emergency(*, session: Session, request_id: int, actor: Actor, now: datetime,
                      policy: Policy) -> Decision:
    """The owner (or an admin) confirms an emergency access was justified; recorded once."""
    request = session.exec(select(AccessRequest).where(AccessRequest.id == request_id).with_for_update()).first()
    if request is None or not request.emergency or request.status != RequestStatus.APPROVED:
        raise InvalidInput("That is not an emergency access waiting for review.")
    asset = get_asset(session=session, asset_id=request.asset_id)
    is_admin = bool(policy.admin_group and policy.admin_group in actor.groups)
    if actor.user_id != asset.owner_id and not is_admin:
        raise NotAllowed(f"Only the owner of {asset.slug} or a Steward admin reviews its emergency access.")
    reviewed = session.exec(select(Decision).where(Decision.request_id == request.id,
                                                   Decision.outcome == CONFIRM)).first()
    if reviewed:
        raise access.AlreadyDecided("This emergency access was already reviewed.", decided_by=reviewed.approver_id)
    grant = session.exec(select(Grant).where(Grant.request_id == request.id)).first()
    if grant is not None and grant.status == GrantStatus.REVOKED:
        raise access.AlreadyDecided("This emergency access was already revoked.", decided_by=grant.ended_by)
    decision = access.record_decision(session, request, actor.user_id, CONFIRM, step_id=None, now=now)
    access.log_request(session, request, "access.emergency_reviewed", actor=actor.user_id, now=now,
                       after={"outcome": CONFIRM})
    access.redraw(session, request, now)
    return decision
