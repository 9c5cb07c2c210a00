"""Access requests, approvals and grants: state machines, lineage-aware routing and exactly-once decisions.

Request:       pending -> approved | denied | cancelled | expired   (every other move is an error)
Grant:    provisioning -> active | revoked
                active -> expired | revoked

A grant starts `active`, unless the policy names a provisioning connector for the asset's tier: then it
starts `provisioning` and becomes active when the connector has set it up (workflows/provisioning.py).
Only active grants count: lists, expiry warnings and expiry ignore grants still being set up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from workflows import audit, lineage, provisioning, recert_schedule
from workflows.details import field_errors
from workflows.enums import (
    AccessLevel, AssetKind, AssetStatus, EdgeType, GrantStatus, RequestStatus, RiskTier, Sensitivity,
)
from workflows.errors import Conflict, InvalidInput, NotAllowed, NotFound
from workflows.inventory import Actor, get_asset
from workflows.models import AccessRequest, ApprovalStep, Asset, Decision, Grant, OutboxMessage
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import DATA_OWNERS, OWNER, Connector, Policy

REQUEST_TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.PENDING: frozenset({RequestStatus.APPROVED, RequestStatus.DENIED, RequestStatus.CANCELLED,
                                      RequestStatus.EXPIRED}),
    RequestStatus.APPROVED: frozenset(),
    RequestStatus.DENIED: frozenset(),
    RequestStatus.CANCELLED: frozenset(),
    RequestStatus.EXPIRED: frozenset(),
}
GRANT_TRANSITIONS: dict[GrantStatus, frozenset[GrantStatus]] = {
    GrantStatus.PROVISIONING: frozenset({GrantStatus.ACTIVE, GrantStatus.REVOKED}),
    GrantStatus.ACTIVE: frozenset({GrantStatus.EXPIRED, GrantStatus.REVOKED}),
    GrantStatus.EXPIRED: frozenset(),
    GrantStatus.REVOKED: frozenset(),
}

# Upstream data whose owners must approve access to what was built from it.
DATA_LINEAGE = (EdgeType.USES, EdgeType.TRAINED_ON, EdgeType.DERIVED_FROM)
SENSITIVE = frozenset({Sensitivity.CONFIDENTIAL, Sensitivity.RESTRICTED})
APPROVE, DENY = "approve", "deny"
SYSTEM_ACTOR = "steward"  # the actor recorded for what Steward does on its own (expiry, escalation)
REASON_MAX = 1000  # the length of Decision.reason, resolution_note and Grant.end_reason
Members = Callable[[str], frozenset[str]]


class IllegalTransition(Conflict):
    """A request or grant was asked to move somewhere its state machine does not allow."""


class AlreadyDecided(Conflict):
    """The click lost: the request or step was already decided, by `decided_by`."""

    def __init__(self, message: str, *, decided_by: str = ""):
        super().__init__(message)
        self.decided_by = decided_by


def check_request_transition(current: RequestStatus, target: RequestStatus) -> None:
    """Raise IllegalTransition unless a request may move from `current` to `target`."""
    if target not in REQUEST_TRANSITIONS[current]:
        raise IllegalTransition(f"A {current.value} request cannot become {target.value}.")


def check_grant_transition(current: GrantStatus, target: GrantStatus) -> None:
    """Raise IllegalTransition unless a grant may move from `current` to `target`."""
    if target not in GRANT_TRANSITIONS[current]:
        raise IllegalTransition(f"A grant that is {current.value} cannot become {target.value}.")


class RequestInput(BaseModel):
    """What the request modal hands over."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    level: AccessLevel
    duration_hours: int = Field(gt=0)
    justification: str = Field(min_length=1, max_length=1000)
    emergency: bool = False


def parse_request_input(raw: dict) -> RequestInput:
    """Validate raw request fields; raise InvalidInput with an error per field."""
    try:
        return RequestInput.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        if "justification" in errors:
            errors["justification"] = "Say why you need access (at most 1000 characters)."
        raise InvalidInput("Some fields need fixing.", field_errors=errors) from exc


@dataclass(frozen=True)
class StepPlan:
    """One approval step as routed: who may satisfy it, and why it was rerouted, if it was."""

    group: str
    approvers: frozenset[str]
    rerouted: str = ""


# ---- routing (pure) ------------------------------------------------------------------------------


def plan_steps(*, policy: Policy, tier: RiskTier | None, owner_id: str, data_owners: frozenset[str],
               requester_id: str, members_of: Members) -> list[StepPlan]:
    """Route a request: each policy step gets its eligible approvers; a step left with none goes to the
    fallback group. The requester never approves, and one person is never the only hope of two steps."""
    steps: list[StepPlan] = []
    spoken_for: set[str] = set()
    for group in policy.tier(tier).approvers:
        if group == DATA_OWNERS and not data_owners:
            continue  # nothing sensitive upstream, so there is no one to ask
        candidates = _candidates(group, owner_id=owner_id, data_owners=data_owners, members_of=members_of)
        eligible = frozenset(candidates - {requester_id} - spoken_for)
        rerouted = ""
        if not eligible:
            # An empty group is a subset of anything, so it is told apart first.
            why = "nobody is in it" if not candidates else "you are its only approver" \
                if candidates <= {requester_id} else "its approvers already approve another step"
            eligible = _fallback(policy, members_of, exclude={requester_id} | spoken_for)
            rerouted = f"Step '{_label(group)}' went to {policy.fallback_group or 'the fallback group'}: {why}."
        if len(eligible) == 1:
            spoken_for |= eligible
        steps.append(StepPlan(group=group, approvers=eligible, rerouted=rerouted))
    return steps


def _candidates(group: str, *, owner_id: str, data_owners: frozenset[str], members_of: Members) -> set[str]:
    if group == OWNER:
        return {owner_id}
    if group == DATA_OWNERS:
        return set(data_owners)
    return set(members_of(group))


def _fallback(policy: Policy, members_of: Members, *, exclude: set[str]) -> frozenset[str]:
    members = frozenset(members_of(policy.fallback_group)) - exclude if policy.fallback_group else frozenset()
    if not members:
        raise InvalidInput("No one is left who may approve this request. Ask a Steward admin to add people "
                           "to the policy's fallback group.")
    return members


def _label(group: str) -> str:
    return "data owners" if group == DATA_OWNERS else group


def data_owners_of(*, session: Session, asset: Asset) -> frozenset[str]:
    """Owners of every sensitive dataset upstream of a model or system (trained_on, derived_from, uses)."""
    return frozenset(d.owner_id for d in sensitive_upstream(session=session, asset=asset))


# ---- requesting ----------------------------------------------------------------------------------


def lock_asset_for_filing(session: Session, asset_id: int) -> None:
    """Serialise filing per asset, or two submissions at once would both pass the duplicate check.

    NO KEY UPDATE, so grants and requests that merely reference the asset are not blocked, and it is
    taken before the decision log's lock, in the same order as asset edits.
    """
    session.exec(select(Asset.id).where(Asset.id == asset_id).with_for_update(key_share=True)).first()


def sensitive_upstream(*, session: Session, asset: Asset) -> list[Asset]:
    """Datasets upstream of an asset (uses, trained_on, derived_from) that are confidential, restricted
    or hold personal data: the data whose owners must approve access."""
    upstream = lineage.upstream_ids(session=session, start=[asset.id], types=DATA_LINEAGE, include_start=False)
    datasets = session.exec(select(Asset).where(col(Asset.id).in_(upstream), Asset.kind == AssetKind.DATASET)
                            .order_by(Asset.slug)).all()
    return [d for d in datasets if d.sensitivity in SENSITIVE or d.contains_personal_data]


def check_requestable(*, session: Session, asset: Asset, data: RequestInput, requester_id: str,
                      policy: Policy) -> None:
    """Refuse a request that cannot be filed: retired or prohibited assets, too long, or a duplicate."""
    if asset.status == AssetStatus.RETIRED:
        raise InvalidInput(f"{asset.slug} is retired; nobody can be granted access to it.")
    rules = policy.tier(asset.effective_tier)
    if rules.access == "refused" or asset.effective_tier == RiskTier.PROHIBITED:
        raise NotAllowed(f"{asset.slug} is part of a prohibited AI system; access is refused.")
    limit = policy.emergency.max_hours if data.emergency else rules.max_grant_days * 24
    if data.duration_hours > limit:
        message = f"At most {_duration(limit)} for this asset."
        raise InvalidInput(message, field_errors={"duration_hours": message})
    if data.emergency and session.exec(select(Grant.id).where(
            Grant.asset_id == asset.id, Grant.grantee_id == requester_id, Grant.emergency,
            col(Grant.status).in_([GrantStatus.ACTIVE, GrantStatus.PROVISIONING]))).first():
        message = f"You already hold emergency access to {asset.slug}; it must end before you break glass again."
        raise Conflict(message, field="emergency")
    duplicate = session.exec(select(AccessRequest).where(
        AccessRequest.asset_id == asset.id, AccessRequest.requester_id == requester_id,
        AccessRequest.level == data.level, AccessRequest.status == RequestStatus.PENDING)).first()
    if duplicate:
        message = f"You already have a pending {data.level.value} request for {asset.slug} (#{duplicate.id})."
        raise Conflict(message, field="level")


def request_access(*, session: Session, asset_id: int, data: RequestInput, requester: Actor, now: datetime,
                   policy: Policy, members_of: Members, reply_channel: str = "",
                   renews_grant_id: int | None = None) -> AccessRequest:
    """File a request, route it, and DM every approver."""
    asset = get_asset(session=session, asset_id=asset_id)
    lock_asset_for_filing(session, asset.id)
    check_requestable(session=session, asset=asset, data=data, requester_id=requester.user_id, policy=policy)
    plans = plan_steps(policy=policy, tier=asset.effective_tier, owner_id=asset.owner_id,
                       data_owners=data_owners_of(session=session, asset=asset), requester_id=requester.user_id,
                       members_of=members_of)
    timings = policy.approvals
    request = AccessRequest(
        asset_id=asset.id, requester_id=requester.user_id, level=data.level, duration_hours=data.duration_hours,
        justification=data.justification, emergency=data.emergency, created_at=now, renews_grant_id=renews_grant_id,
        next_reminder_at=now + timedelta(hours=timings.remind_after_hours[0]) if timings.remind_after_hours else None,
        escalate_at=now + timedelta(hours=timings.escalate_after_hours),
        expires_at=now + timedelta(days=timings.expire_after_days),
    )
    session.add(request)
    session.flush()
    for position, plan in enumerate(plans):
        session.add(ApprovalStep(request_id=request.id, position=position, group=plan.group,
                                 approvers=sorted(plan.approvers), rerouted=plan.rerouted))
    session.flush()
    log_request(session, request, "access.requested", actor=requester.user_id, now=now, after={
        "asset": asset.slug, "level": data.level.value, "duration_hours": data.duration_hours,
        "justification": data.justification, "emergency": data.emergency,
        "steps": [{"group": p.group, "approvers": sorted(p.approvers), "rerouted": p.rerouted} for p in plans]})
    for approver in sorted({a for p in plans for a in p.approvers}):
        _dm(session, request, approver, "approval_request", now)
    add_message(session=session, method=OutboxMethod.EPHEMERAL, channel=reply_channel, user=requester.user_id,
                payload={"template": "request_filed", "request_id": request.id}, now=now,
                topic=_topic(request))
    if not plans:
        _approve_all(session, request, approver_id=requester.user_id, now=now, auto=True, policy=policy)
    return request


# ---- deciding ------------------------------------------------------------------------------------


def approve(*, session: Session, request_id: int, approver_id: str, now: datetime,
            policy: Policy | None = None) -> AccessRequest:
    """Record one approval; the last required one grants access. Exactly once per approver and step.

    With `policy`, a provisioning connector it names for the asset's tier sets the grant up first;
    without one, the grant is active at once."""
    _lock_grant_targets(session, request_id)
    request = _pending_for_update(session, request_id)
    if approver_id == request.requester_id:
        raise NotAllowed("You cannot approve your own request.")
    steps = _steps(session, request.id)
    if any(s.approved_by == approver_id for s in steps):
        raise AlreadyDecided("You have already approved this request.", decided_by=approver_id)
    open_steps = [s for s in steps if not s.approved_by and approver_id in s.approvers]
    if not open_steps:
        mine = [s for s in steps if approver_id in s.approvers]
        if mine:
            raise AlreadyDecided("That step was already approved.", decided_by=mine[0].approved_by)
        raise NotAllowed("You are not an approver of this request.")
    # Spend the click on the step with the fewest other hopes, so that someone who is also the only
    # approver of a later step does not use up an earlier step that others could have satisfied.
    step = min(open_steps, key=lambda s: len(s.approvers))
    record_decision(session, request, approver_id, APPROVE, step_id=step.id, now=now)
    claimed = session.execute(
        update(ApprovalStep).where(ApprovalStep.id == step.id, ApprovalStep.approved_by == "")
        .values(approved_by=approver_id, approved_at=now)).rowcount
    if claimed != 1:
        raise AlreadyDecided("That step was just approved by someone else.")
    session.refresh(step)
    log_request(session, request, "access.approved_step", actor=approver_id, now=now,
         after={"step": step.position, "group": step.group})
    if all(s.approved_by for s in _steps(session, request.id)):
        _approve_all(session, request, approver_id=approver_id, now=now, policy=policy)
    else:
        redraw(session, request, now)
    return request


def deny(*, session: Session, request_id: int, approver_id: str, reason: str, now: datetime) -> AccessRequest:
    """Deny the request on behalf of one eligible approver; it ends at once."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("Say why you deny it.", field_errors={"reason": "Say why you deny it."})
    _check_reason_length(reason)
    request = _pending_for_update(session, request_id)
    if approver_id == request.requester_id:
        raise NotAllowed("You cannot decide your own request; cancel it instead.")
    if not any(approver_id in s.approvers for s in _steps(session, request.id)):
        raise NotAllowed("You are not an approver of this request.")
    record_decision(session, request, approver_id, DENY, step_id=None, now=now, reason=reason)
    _resolve(session, request, RequestStatus.DENIED, by=approver_id, note=reason, now=now)
    _tell_requester(session, request, "request_denied", now)
    return request


def cancel_request(*, session: Session, request_id: int, actor: Actor, now: datetime) -> AccessRequest:
    """The requester withdraws a pending request."""
    request = _pending_for_update(session, request_id)
    if actor.user_id != request.requester_id:
        raise NotAllowed("Only the person who asked can cancel a request.")
    _resolve(session, request, RequestStatus.CANCELLED, by=actor.user_id, note="cancelled", now=now)
    return request


def _approve_all(session: Session, request: AccessRequest, *, approver_id: str, now: datetime,
                 auto: bool = False, policy: Policy | None = None) -> Grant:
    return approve_without_steps(session, request, approver_id=approver_id, now=now, note="auto" if auto else "",
                                 policy=policy)


def approve_without_steps(session: Session, request: AccessRequest, *, approver_id: str, now: datetime,
                          note: str = "", tell_requester: bool = True, policy: Policy | None = None) -> Grant:
    """Approve a pending request outright and grant it (the last step, or break-glass); with a connector in
    `policy` for the asset's tier, the new grant waits for it in `provisioning` (an extension needs none)."""
    _resolve(session, request, RequestStatus.APPROVED, by=approver_id, note=note, now=now)
    connector = provisioning.connector_for(session=session, asset_id=request.asset_id, policy=policy)
    grant, new = _grant_for(session, request, now, connector=connector)
    if new:
        recert_schedule.schedule_live_grant(session=session, asset_id=grant.asset_id, now=now, policy=policy)
    after = {"grantee": grant.grantee_id, "level": grant.level.value, "expires_at": grant.expires_at.isoformat()}
    if grant.status == GrantStatus.PROVISIONING:
        after |= {"status": grant.status.value, "connector": connector[0]}
    log_request(session, request, "access.granted", actor=approver_id, now=now, subject=grant, after=after)
    if new and connector is not None:
        provisioning.start_grant(session=session, grant=grant, connector=connector, now=now)
    if tell_requester:
        _tell_requester(session, request, "request_approved", now)
    return grant


def _grant_for(session: Session, request: AccessRequest, now: datetime, *,
               connector: tuple[str, Connector] | None = None) -> tuple[Grant, bool]:
    # The grant and whether it is new: a renewal of an active grant extends it, and what a connector set
    # up for it stays set up. A new grant waits in `provisioning` when a connector applies.
    duration = timedelta(hours=request.duration_hours)
    if request.renews_grant_id:
        grant = session.exec(select(Grant).where(Grant.id == request.renews_grant_id).with_for_update()).one()
        if grant.status == GrantStatus.ACTIVE:
            grant.expires_at, grant.warned_at = max(grant.expires_at, now) + duration, None
            session.add(grant)
            session.flush()
            return grant, False
    # While provisioning, expires_at is only a placeholder: it runs from activation (activate_grant).
    grant = Grant(request_id=request.id, asset_id=request.asset_id, grantee_id=request.requester_id,
                  level=request.level, emergency=request.emergency, granted_at=now, expires_at=now + duration,
                  status=GrantStatus.PROVISIONING if connector else GrantStatus.ACTIVE)
    session.add(grant)
    session.flush()
    return grant, True


def activate_grant(session: Session, grant: Grant, *, now: datetime) -> None:
    """A provisioning grant becomes active now (its connector set it up); its time runs from now."""
    check_grant_transition(grant.status, GrantStatus.ACTIVE)
    request = session.get(AccessRequest, grant.request_id)
    duration = timedelta(hours=request.duration_hours) if request else grant.expires_at - grant.granted_at
    moved = session.execute(
        update(Grant).where(Grant.id == grant.id, Grant.status == GrantStatus.PROVISIONING)
        .values(status=GrantStatus.ACTIVE, granted_at=now, expires_at=now + duration, warned_at=None)).rowcount
    if moved != 1:
        raise AlreadyDecided("This access is no longer waiting to be set up.")
    session.refresh(grant)


def record_decision(session: Session, request: AccessRequest, approver_id: str, outcome: str, *,
                    step_id: int | None, now: datetime, reason: str = "") -> Decision:
    """Insert one person's decision; a second one for the same request raises AlreadyDecided."""
    decision = Decision(request_id=request.id, step_id=step_id, approver_id=approver_id, outcome=outcome,
                        reason=reason, decided_at=now)
    # The unique (request, approver) key is the referee for double clicks and Slack's retries.
    try:
        with session.begin_nested():
            session.add(decision)
    except IntegrityError as exc:
        raise AlreadyDecided("You have already decided this request.", decided_by=approver_id) from exc
    return decision


def _resolve(session: Session, request: AccessRequest, target: RequestStatus, *, by: str, note: str,
             now: datetime) -> None:
    check_request_transition(request.status, target)
    # Compare-and-set: only one transaction moves a request out of pending.
    moved = session.execute(
        update(AccessRequest).where(AccessRequest.id == request.id, AccessRequest.status == RequestStatus.PENDING)
        .values(status=target, resolved_at=now, resolved_by=by, resolution_note=note, next_reminder_at=None,
                escalate_at=None, expires_at=None)).rowcount
    if moved != 1:
        raise AlreadyDecided("This request was already decided.", decided_by=request.resolved_by)
    session.refresh(request)
    log_request(session, request, f"access.{target.value}", actor=by, now=now, before={"status": "pending"},
         after={"status": target.value, "note": note})
    redraw(session, request, now)


def _lock_grant_targets(session: Session, request_id: int) -> None:
    # The last approval writes a grant after it has taken the decision log's lock. Asset edits take the
    # asset, and revokes and expiries the grant, before the log; take them in that order here too, or the
    # two transactions deadlock. FOR KEY SHARE on the asset waits only for an edit, not for other requests.
    ids = session.exec(select(AccessRequest.asset_id, AccessRequest.renews_grant_id)
                       .where(AccessRequest.id == request_id)).first()
    if ids is None:
        return
    asset_id, grant_id = ids
    session.exec(select(Asset.id).where(Asset.id == asset_id).with_for_update(read=True, key_share=True)).all()
    if grant_id is not None:
        session.exec(select(Grant.id).where(Grant.id == grant_id).with_for_update()).all()


def _check_reason_length(reason: str) -> None:
    # The reason is stored in 1000-character columns; PostgreSQL would refuse a longer one with a raw error.
    if len(reason) > REASON_MAX:
        message = f"Keep the reason to {REASON_MAX} characters."
        raise InvalidInput(message, field_errors={"reason": message})


def _pending_for_update(session: Session, request_id: int) -> AccessRequest:
    request = session.exec(select(AccessRequest).where(AccessRequest.id == request_id).with_for_update()).first()
    if request is None:
        raise NotFound(f"No access request has id {request_id}.")
    if request.status != RequestStatus.PENDING:
        raise AlreadyDecided(_closed_message(request), decided_by=_decider(request))
    return request


def _closed_message(request: AccessRequest) -> str:
    if request.status == RequestStatus.EXPIRED:
        return "This request expired without a decision."
    if request.status == RequestStatus.CANCELLED and request.resolved_by == SYSTEM_ACTOR:
        return f"This request was withdrawn: {request.resolution_note}."
    if request.status == RequestStatus.CANCELLED:
        return "The requester cancelled this request."
    return f"This request is already {request.status.value}."


def _decider(request: AccessRequest) -> str:
    # Only a person's decision names someone; expiry and cancellation are not "decided by" anyone.
    if request.status in (RequestStatus.APPROVED, RequestStatus.DENIED) and request.resolved_by != SYSTEM_ACTOR:
        return request.resolved_by
    return ""


# ---- grants --------------------------------------------------------------------------------------


def revoke_grant(*, session: Session, grant_id: int, actor: Actor, reason: str, now: datetime,
                 policy: Policy) -> Grant:
    """The asset's owner or an admin ends a grant early, with a reason."""
    grant = _grant_for_update(session, grant_id)
    asset = get_asset(session=session, asset_id=grant.asset_id)
    is_admin = bool(policy.admin_group and policy.admin_group in actor.groups)
    if actor.user_id != asset.owner_id and not is_admin:
        raise NotAllowed(f"Only the owner of {asset.slug} or a Steward admin can revoke access.")
    if not reason.strip():
        raise InvalidInput("Say why you revoke it.", field_errors={"reason": "Say why you revoke it."})
    _check_reason_length(reason.strip())
    _end_grant(session, grant, GrantStatus.REVOKED, by=actor.user_id, reason=reason.strip(), now=now)
    return grant


def release_grant(*, session: Session, grant_id: int, actor: Actor, now: datetime) -> Grant:
    """The grantee gives access back before it expires."""
    grant = _grant_for_update(session, grant_id)
    if actor.user_id != grant.grantee_id:
        raise NotAllowed("Only the person who holds this access can release it.")
    _end_grant(session, grant, GrantStatus.REVOKED, by=actor.user_id, reason="released by the grantee", now=now)
    return grant


def expire_grant(*, session: Session, grant_id: int, now: datetime) -> Grant | None:
    """End a grant whose time is up (idempotent: an already ended or extended grant is left alone)."""
    grant = _grant_for_update(session, grant_id)
    if grant.status != GrantStatus.ACTIVE or grant.expires_at > now:
        return None
    _end_grant(session, grant, GrantStatus.EXPIRED, by=SYSTEM_ACTOR, reason="expired", now=now)
    return grant


def request_extension(*, session: Session, grant_id: int, actor: Actor, now: datetime, policy: Policy,
                      members_of: Members, reply_channel: str = "") -> AccessRequest:
    """File a renewal of an active grant; it goes through the same approval."""
    grant = _grant_for_update(session, grant_id)
    if actor.user_id != grant.grantee_id:
        raise NotAllowed("Only the person who holds this access can extend it.")
    if grant.status == GrantStatus.PROVISIONING:
        raise Conflict("This access is still being set up; extend it once it is active.")
    if grant.status != GrantStatus.ACTIVE:
        raise Conflict(f"This access already {grant.status.value}.")
    original = session.get(AccessRequest, grant.request_id)
    data = RequestInput(level=grant.level, duration_hours=original.duration_hours if original else 24,
                        justification=f"Extension of grant #{grant.id}: {original.justification if original else ''}"[:1000])
    return request_access(session=session, asset_id=grant.asset_id, data=data, requester=actor, now=now,
                          policy=policy, members_of=members_of, renews_grant_id=grant.id,
                          reply_channel=reply_channel)


def _end_grant(session: Session, grant: Grant, target: GrantStatus, *, by: str, reason: str, now: datetime) -> None:
    was = grant.status
    if was not in (GrantStatus.ACTIVE, GrantStatus.PROVISIONING):
        ended = "expired" if grant.status == GrantStatus.EXPIRED else "been revoked"
        raise AlreadyDecided(f"This access has already {ended}.",
                             decided_by=grant.ended_by if grant.ended_by != SYSTEM_ACTOR else "")
    check_grant_transition(was, target)
    moved = session.execute(
        update(Grant).where(Grant.id == grant.id, Grant.status == was)
        .values(status=target, ended_at=now, ended_by=by, end_reason=reason)).rowcount
    if moved != 1:
        raise AlreadyDecided("This access has already ended.")
    session.refresh(grant)
    _log_grant(session, grant, f"grant.{target.value}", actor=by, now=now, after={"reason": reason}, was=was)
    add_message(session=session, method=OutboxMethod.DM, user=grant.grantee_id, now=now, topic=f"grant:{grant.id}",
                payload={"template": f"grant_{target.value}", "grant_id": grant.id})
    # Steward has ended it; the connector that set it up is asked to follow (a revoke job), and the
    # messages about its provisioning are redrawn (a break-glass grant's are, below, with the rest).
    if provisioning.grant_ended(session=session, grant=grant, now=now) and not grant.emergency:
        provisioning.redraw_grant(session=session, grant=grant, now=now)
    if target == GrantStatus.REVOKED:
        _cancel_renewals(session, grant, now)
    if grant.emergency:
        # The security alert and the owner's review show whether the emergency access still stands.
        request = session.get(AccessRequest, grant.request_id)
        if request is not None:
            redraw(session, request, now)


def _cancel_renewals(session: Session, grant: Grant, now: datetime) -> None:
    # Revoked access must not come back through an extension approved later. (An expired grant keeps its
    # pending extension: approving it late gives the grantee fresh access, as they asked in time.)
    renewals = session.exec(select(AccessRequest).where(AccessRequest.renews_grant_id == grant.id,
                                                        AccessRequest.status == RequestStatus.PENDING)
                            .with_for_update()).all()
    for renewal in renewals:
        _resolve(session, renewal, RequestStatus.CANCELLED, by=SYSTEM_ACTOR,
                 note="the access it would extend was revoked", now=now)


def _grant_for_update(session: Session, grant_id: int) -> Grant:
    grant = session.exec(select(Grant).where(Grant.id == grant_id).with_for_update()).first()
    if grant is None:
        raise NotFound(f"No grant has id {grant_id}.")
    return grant


# ---- reading -------------------------------------------------------------------------------------


def steps_of(*, session: Session, request_id: int) -> list[ApprovalStep]:
    """A request's approval steps, in order."""
    return _steps(session, request_id)


def my_access(*, session: Session, user_id: str) -> tuple[list[Grant], list[AccessRequest]]:
    """A user's active grants and pending requests, newest first."""
    grants = session.exec(select(Grant).where(Grant.grantee_id == user_id, Grant.status == GrantStatus.ACTIVE)
                          .order_by(col(Grant.expires_at))).all()
    requests = session.exec(select(AccessRequest).where(AccessRequest.requester_id == user_id,
                                                        AccessRequest.status == RequestStatus.PENDING)
                            .order_by(col(AccessRequest.created_at).desc())).all()
    return list(grants), list(requests)


def pending_approvals(*, session: Session, user_id: str) -> list[AccessRequest]:
    """Pending requests waiting on this user's approval (for App Home)."""
    pending = session.exec(select(AccessRequest).where(AccessRequest.status == RequestStatus.PENDING)
                           .order_by(col(AccessRequest.created_at))).all()
    waiting = []
    for request in pending:
        steps = _steps(session, request.id)
        if any(s.approved_by == user_id for s in steps):
            continue
        if any(not s.approved_by and user_id in s.approvers for s in steps):
            waiting.append(request)
    return waiting


def active_grants(*, session: Session, asset_id: int) -> list[Grant]:
    """Who holds access to an asset now."""
    return list(session.exec(select(Grant).where(Grant.asset_id == asset_id, Grant.status == GrantStatus.ACTIVE)
                             .order_by(col(Grant.expires_at))).all())


# ---- internals -----------------------------------------------------------------------------------


def _steps(session: Session, request_id: int) -> list[ApprovalStep]:
    return list(session.exec(select(ApprovalStep).where(ApprovalStep.request_id == request_id)
                             .order_by(col(ApprovalStep.position))).all())


def _topic(request: AccessRequest) -> str:
    return f"request:{request.id}"


def _dm(session: Session, request: AccessRequest, user_id: str, template: str, now: datetime) -> None:
    add_message(session=session, method=OutboxMethod.DM, user=user_id, now=now, topic=_topic(request),
                payload={"template": template, "request_id": request.id, "approver": user_id})


def _tell_requester(session: Session, request: AccessRequest, template: str, now: datetime) -> None:
    add_message(session=session, method=OutboxMethod.DM, user=request.requester_id, now=now,
                topic=f"outcome:{request.id}", payload={"template": template, "request_id": request.id})


def redraw(session: Session, request: AccessRequest, now: datetime) -> None:
    """Queue a chat.update of every message about the request (approver DMs, alerts), drawn from current state."""
    originals = session.exec(select(OutboxMessage.id).where(
        OutboxMessage.topic == _topic(request), col(OutboxMessage.method).in_([OutboxMethod.DM, OutboxMethod.POST]))
    ).all()
    for original_id in originals:
        add_message(session=session, method=OutboxMethod.UPDATE, updates_id=original_id, now=now,
                    topic=_topic(request), payload={"template": "redraw"})


def log_request(session: Session, request: AccessRequest, action: str, *, actor: str, now: datetime,
         before: dict | None = None, after: dict | None = None, subject: Grant | None = None) -> None:
    """Append a decision-log entry about a request (or the grant it produced)."""
    asset = session.get(Asset, request.asset_id)
    subject_type, subject_id = ("grant", subject.id) if subject else ("access_request", request.id)
    audit.append_entry(session=session, actor=actor, action=action, subject_type=subject_type,
                       subject_id=subject_id, subject_slug=asset.slug if asset else "", before=before,
                       after={"request": request.id, **(after or {})}, now=now)


def _log_grant(session: Session, grant: Grant, action: str, *, actor: str, now: datetime, after: dict,
               was: GrantStatus = GrantStatus.ACTIVE) -> None:
    asset = session.get(Asset, grant.asset_id)
    audit.append_entry(session=session, actor=actor, action=action, subject_type="grant", subject_id=grant.id,
                       subject_slug=asset.slug if asset else "", before={"status": was.value},
                       after={"status": grant.status.value, "grantee": grant.grantee_id, **after}, now=now)


def _duration(hours: int) -> str:
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"
