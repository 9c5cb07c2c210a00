"""What is due as of `now` for access: reminders, escalations, expiries and grant warnings and ends.

Only active grants are warned and ended: a grant still being set up by its provisioning connector has
no clock yet (it starts when the grant becomes active). Due provisioning jobs are in workflows.provisioning.

Each `due_*` query reads one indexed deadline column, so a sweep costs time in proportion to what is
due, not to the whole inventory. Each action re-checks its deadline under a row lock, so running it
twice (a retried task, two sweeps) does the work once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from workflows import audit
from workflows.access import SYSTEM_ACTOR, Members, _dm, _fallback, _resolve, _steps, _tell_requester, expire_grant
from workflows.errors import InvalidInput
from workflows.enums import GrantStatus, RequestStatus
from workflows.models import AccessRequest, ApprovalStep, Asset, Grant
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy

BATCH = 500


@dataclass
class DueWork:
    """Ids of everything due, by kind of work."""

    reminders: list[int] = field(default_factory=list)
    escalations: list[int] = field(default_factory=list)
    request_expiries: list[int] = field(default_factory=list)
    grant_warnings: list[int] = field(default_factory=list)
    grant_expiries: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many things are due in all."""
        return sum(len(ids) for ids in vars(self).values())


def due_work(*, session: Session, now: datetime, policy: Policy, limit: int = BATCH) -> DueWork:
    """Everything access-related that is due as of `now`."""
    pending = AccessRequest.status == RequestStatus.PENDING
    active = Grant.status == GrantStatus.ACTIVE
    warn_before = timedelta(hours=policy.grants.warn_before_hours)
    return DueWork(
        reminders=_ids(session, select(AccessRequest.id).where(pending, AccessRequest.next_reminder_at <= now), limit),
        escalations=_ids(session, select(AccessRequest.id).where(pending, AccessRequest.escalate_at <= now), limit),
        request_expiries=_ids(session, select(AccessRequest.id).where(pending, AccessRequest.expires_at <= now),
                              limit),
        grant_warnings=_ids(session, select(Grant.id).where(active, col(Grant.warned_at).is_(None),
                                                            Grant.expires_at <= now + warn_before,
                                                            Grant.expires_at > now), limit),
        grant_expiries=_ids(session, select(Grant.id).where(active, Grant.expires_at <= now), limit),
    )


def remind(*, session: Session, request_id: int, now: datetime, policy: Policy) -> bool:
    """Nudge the approvers of every open step, then schedule the next reminder (if any)."""
    request = _locked_pending(session, request_id)
    if request is None or request.next_reminder_at is None or request.next_reminder_at > now:
        return False
    for approver in _undecided_approvers(session, request):
        _dm(session, request, approver, "approval_reminder", now)
    request.reminders_sent += 1
    schedule = policy.approvals.remind_after_hours
    following = schedule[request.reminders_sent] if request.reminders_sent < len(schedule) else None
    request.next_reminder_at = request.created_at + timedelta(hours=following) if following else None
    session.add(request)
    _log(session, request, "access.reminded", now=now, after={"reminder": request.reminders_sent})
    return True


def escalate(*, session: Session, request_id: int, now: datetime, policy: Policy, members_of: Members) -> bool:
    """Add the fallback group to every open step and ask them; the requester is told."""
    request = _locked_pending(session, request_id)
    if request is None or request.escalate_at is None or request.escalate_at > now:
        return False
    steps = _steps(session, request.id)
    request.escalate_at = None  # escalation happens once, whether or not anyone is left to ask
    session.add(request)
    try:
        fallback = _fallback(policy, members_of, exclude={request.requester_id})
    except InvalidInput:
        _log(session, request, "access.escalation_failed", now=now, after={"reason": "fallback group is empty"})
        return False
    # One person satisfies at most one step, so whoever approved a step is not asked for another.
    extra = fallback - {s.approved_by for s in steps}
    added: set[str] = set()
    for step in steps:
        if step.approved_by:
            continue
        new = sorted(extra - set(step.approvers))
        step.approvers = sorted(set(step.approvers) | extra)
        step.rerouted = (step.rerouted + " " if step.rerouted else "") + "Escalated: no decision in time."
        session.add(step)
        added |= set(new)
    request.escalate_at = None
    session.add(request)
    for approver in sorted(added):
        _dm(session, request, approver, "approval_request", now)
    _tell_requester(session, request, "request_escalated", now)
    _log(session, request, "access.escalated", now=now, after={"added": sorted(added)})
    return True


def expire_request(*, session: Session, request_id: int, now: datetime) -> bool:
    """Give up on a request nobody decided in time; the requester is told."""
    request = _locked_pending(session, request_id)
    if request is None or request.expires_at is None or request.expires_at > now:
        return False
    _resolve(session, request, RequestStatus.EXPIRED, by=SYSTEM_ACTOR, note="no decision in time", now=now)
    _tell_requester(session, request, "request_expired", now)
    return True


def warn_grant(*, session: Session, grant_id: int, now: datetime, policy: Policy) -> bool:
    """Tell the grantee their access ends soon, with an Extend button (once per grant period)."""
    grant = session.exec(select(Grant).where(Grant.id == grant_id).with_for_update()).first()
    if grant is None or grant.status != GrantStatus.ACTIVE or grant.warned_at is not None:
        return False
    if grant.expires_at > now + timedelta(hours=policy.grants.warn_before_hours) or grant.expires_at <= now:
        return False
    grant.warned_at = now
    session.add(grant)
    asset = session.get(Asset, grant.asset_id)
    audit.append_entry(session=session, actor=SYSTEM_ACTOR, action="grant.expiry_warned", subject_type="grant",
                       subject_id=grant.id, subject_slug=asset.slug if asset else "",
                       after={"grantee": grant.grantee_id, "expires_at": grant.expires_at.isoformat()}, now=now)
    add_message(session=session, method=OutboxMethod.DM, user=grant.grantee_id, now=now, topic=f"grant:{grant.id}",
                payload={"template": "grant_expiring", "grant_id": grant.id})
    return True


def end_expired_grant(*, session: Session, grant_id: int, now: datetime) -> bool:
    """Revoke access whose time is up."""
    return expire_grant(session=session, grant_id=grant_id, now=now) is not None


def _locked_pending(session: Session, request_id: int) -> AccessRequest | None:
    request = session.exec(select(AccessRequest).where(AccessRequest.id == request_id).with_for_update()).first()
    return request if request is not None and request.status == RequestStatus.PENDING else None


def _undecided_approvers(session: Session, request: AccessRequest) -> list[str]:
    steps: list[ApprovalStep] = _steps(session, request.id)
    done = {s.approved_by for s in steps if s.approved_by}
    return sorted({a for s in steps if not s.approved_by for a in s.approvers} - done)


def _ids(session: Session, query, limit: int) -> list[int]:
    return list(session.exec(query.limit(limit)).all())


def _log(session: Session, request: AccessRequest, action: str, *, now: datetime, after: dict) -> None:
    asset = session.get(Asset, request.asset_id)
    audit.append_entry(session=session, actor=SYSTEM_ACTOR, action=action, subject_type="access_request",
                       subject_id=request.id, subject_slug=asset.slug if asset else "",
                       after={"request": request.id, **after}, now=now)
