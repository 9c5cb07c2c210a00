"""Provisioning: the connectors that carry out grants and revokes, and the jobs that track them.

Job:    pending -> succeeded | failed | cancelled
        failed  -> succeeded | cancelled       (the owner did it by hand and pressed Done, or access ended)
Grant:  provisioning -> active (its grant job succeeded) | revoked   (see GRANT_TRANSITIONS in access.py)

When the policy names a connector for an asset's tier, an approved request's grant starts out
`provisioning` and a "grant" job is written in the same transaction; the grant counts as active only
once that job succeeds, and its expiry runs from then. Ending a grant that a connector set up writes a
"revoke" job: Steward revokes at once, and the job records whether the other side followed.

- manual: the asset's owner gets a DM with a Done button; the owner's (or an admin's) click completes it.
- webhook: the job is due at `next_attempt_at`. A worker claims it, POSTs the signed event
  (workers/webhooks.py) and records the answer here with `complete_job`. A failed attempt backs off
  1, 2, 4 … minutes (at most an hour, or what a 429's Retry-After asks); after MAX_ATTEMPTS the job
  fails and the owner is told, and can still do it by hand and press Done.

Every result (an attempt that failed, success, giving up, cancelling) appends to the decision log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from workflows import access, audit
from workflows.enums import ConnectorType, GrantStatus, ProvisioningAction, ProvisioningStatus
from workflows.errors import Conflict, NotAllowed, NotFound
from workflows.inventory import Actor, get_asset
from workflows.models import AccessRequest, Asset, Grant, OutboxMessage, ProvisioningJob
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Connector, Policy

JOB_TRANSITIONS: dict[ProvisioningStatus, frozenset[ProvisioningStatus]] = {
    ProvisioningStatus.PENDING: frozenset({ProvisioningStatus.SUCCEEDED, ProvisioningStatus.FAILED,
                                           ProvisioningStatus.CANCELLED}),
    ProvisioningStatus.FAILED: frozenset({ProvisioningStatus.SUCCEEDED, ProvisioningStatus.CANCELLED}),
    ProvisioningStatus.SUCCEEDED: frozenset(),
    ProvisioningStatus.CANCELLED: frozenset(),
}

MAX_ATTEMPTS = 8
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
# A Retry-After is honoured, within reason: a broken header must not park a job for a year.
MAX_RETRY_AFTER = timedelta(hours=24)
# Longer than any webhook call takes (timeout_seconds is at most 60), so a claim only lapses when the
# worker sending it died; then the job is due again and the sweep re-enqueues it.
CLAIM_TTL = timedelta(minutes=5)
# What the sweep calls a due webhook job when it marks it queued (workflows.queued).
SWEEP_KIND = "provisioning"
SIGNATURE_VERSION = "v1"
TIMESTAMP_HEADER = "X-Steward-Timestamp"
SIGNATURE_HEADER = "X-Steward-Signature"
BATCH = 500
_ADDED = "steward.provisioning.added"


@dataclass(frozen=True)
class WebhookCall:
    """A claimed webhook job: what to send, and to which connector (looked up in the policy by name)."""

    job_id: int
    connector: str
    event: dict[str, Any]


def check_job_transition(current: ProvisioningStatus, target: ProvisioningStatus) -> None:
    """Raise IllegalTransition unless a job may move from `current` to `target`."""
    if target not in JOB_TRANSITIONS[current]:
        raise access.IllegalTransition(f"A {current.value} provisioning job cannot become {target.value}.")


def backoff(attempts: int, *, retry_after: float | None = None) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt: 1, 2, 4 … minutes, at most an hour,
    unless the other side asked for longer (Retry-After)."""
    wait = min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)
    if retry_after is not None and retry_after > 0:
        wait = min(max(wait, timedelta(seconds=retry_after)), MAX_RETRY_AFTER)
    return wait


# ---- writing jobs (hooks called from workflows.access) -------------------------------------------


def connector_for(*, session: Session, asset_id: int, policy: Policy | None) -> tuple[str, Connector] | None:
    """The connector that provisions new grants to this asset, or None: grants are active at once."""
    if policy is None:
        return None
    asset = session.get(Asset, asset_id)
    return policy.connector_for(asset.effective_tier if asset else None)


def start_grant(*, session: Session, grant: Grant, connector: tuple[str, Connector], now: datetime) -> ProvisioningJob:
    """Ask the connector to set up a new (provisioning) grant."""
    name, settings = connector
    return _add_job(session, grant, ProvisioningAction.GRANT, connector=name, connector_type=settings.type, now=now)


def grant_ended(*, session: Session, grant: Grant, now: datetime) -> bool:
    """Undo at the connector what it set up for a grant that just ended; True if any job changed.

    A grant no connector set up needs nothing. An active one gets a revoke job. One revoked while still
    being set up has its grant job cancelled, and is revoked at the connector too only if a webhook
    attempt may already have reached it (a manual owner is told by their redrawn DM instead)."""
    jobs = {j.action: j for j in session.exec(select(ProvisioningJob).where(ProvisioningJob.grant_id == grant.id)
                                              .with_for_update()).all()}
    grant_job = jobs.get(ProvisioningAction.GRANT)
    if grant_job is None or ProvisioningAction.REVOKE in jobs:
        return False
    not_before = now
    if grant_job.status != ProvisioningStatus.SUCCEEDED:
        reached = grant_job.connector_type == ConnectorType.WEBHOOK and grant_job.last_attempt_at is not None
        if reached and grant_job.status == ProvisioningStatus.PENDING and grant_job.next_attempt_at:
            # An attempt may be on the wire now: send the revoke after it, not alongside it.
            not_before = max(now, min(grant_job.next_attempt_at, grant_job.last_attempt_at + CLAIM_TTL))
        _close(session, grant_job, ProvisioningStatus.CANCELLED, now=now)
        _log(session, grant, grant_job, "grant.provisioning_cancelled", actor=access.SYSTEM_ACTOR, now=now,
             after={"reason": grant.end_reason})
        if not reached:
            return True
    _add_job(session, grant, ProvisioningAction.REVOKE, connector=grant_job.connector,
             connector_type=grant_job.connector_type, now=now, not_before=not_before)
    return True


def added_job_ids(session: Session) -> list[int]:
    """Ids of the webhook jobs this session wrote, for the edge to enqueue once the transaction commits."""
    return list(session.info.get(_ADDED, []))


def _add_job(session: Session, grant: Grant, action: ProvisioningAction, *, connector: str,
             connector_type: ConnectorType, now: datetime, not_before: datetime | None = None) -> ProvisioningJob:
    webhook = connector_type == ConnectorType.WEBHOOK
    job = ProvisioningJob(grant_id=grant.id, action=action, connector=connector, connector_type=connector_type,
                          created_at=now, next_attempt_at=max(now, not_before or now) if webhook else None)
    session.add(job)
    session.flush()
    _log(session, grant, job, "grant.provisioning_requested", actor=access.SYSTEM_ACTOR, now=now,
         after={"type": connector_type.value})
    if webhook:
        session.info.setdefault(_ADDED, []).append(job.id)
    else:
        _tell_owner(session, grant, job, "provisioning_manual", now)
    return job


# ---- completing jobs -----------------------------------------------------------------------------


def complete_job(*, session: Session, job_id: int, ok: bool, now: datetime, error: str = "",
                 confirmed_by: str = "", retry_after: float | None = None) -> ProvisioningJob:
    """Record the outcome of carrying out a job. Success activates a grant (or records a revoke); a
    failure backs off and is retried until MAX_ATTEMPTS, then the job fails and the owner is told."""
    job, grant = _locked(session, job_id)
    if ok:
        _succeed(session, job, grant, confirmed_by=confirmed_by, now=now)
    else:
        _fail_attempt(session, job, grant, error=error, retry_after=retry_after, now=now)
    return job


def confirm_job(*, session: Session, job_id: int, actor: Actor, now: datetime, policy: Policy) -> ProvisioningJob:
    """The Done button: the asset's owner (or an admin) says they carried out the change by hand."""
    job, grant = _locked(session, job_id)
    asset = get_asset(session=session, asset_id=grant.asset_id)
    is_admin = bool(policy.admin_group and policy.admin_group in actor.groups)
    if actor.user_id != asset.owner_id and not is_admin:
        raise NotAllowed(f"Only the owner of {asset.slug} or a Steward admin can confirm this change.")
    if job.status == ProvisioningStatus.PENDING and job.connector_type == ConnectorType.WEBHOOK:
        raise Conflict(f"Steward is still sending this change to {job.connector}; Done is for changes made by "
                       "hand once it has failed.")
    _succeed(session, job, grant, confirmed_by=actor.user_id, now=now)
    return job


def _succeed(session: Session, job: ProvisioningJob, grant: Grant, *, confirmed_by: str, now: datetime) -> None:
    if job.status not in (ProvisioningStatus.PENDING, ProvisioningStatus.FAILED):
        raise access.AlreadyDecided(_closed_message(job), decided_by=job.confirmed_by
                                    if job.confirmed_by != access.SYSTEM_ACTOR else "")
    _close(session, job, ProvisioningStatus.SUCCEEDED, now=now, confirmed_by=confirmed_by)
    if job.action == ProvisioningAction.GRANT:
        access.activate_grant(session, grant, now=now)
        _log(session, grant, job, "grant.provisioned", actor=confirmed_by or access.SYSTEM_ACTOR, now=now,
             before={"status": GrantStatus.PROVISIONING.value},
             after={"status": grant.status.value, "confirmed_by": confirmed_by,
                    "expires_at": grant.expires_at.isoformat()})
        add_message(session=session, method=OutboxMethod.DM, user=grant.grantee_id, now=now,
                    topic=f"grant:{grant.id}", payload={"template": "grant_active", "grant_id": grant.id})
    else:
        _log(session, grant, job, "grant.deprovisioned", actor=confirmed_by or access.SYSTEM_ACTOR, now=now,
             after={"confirmed_by": confirmed_by})
    _redraw(session, grant, now)


def _fail_attempt(session: Session, job: ProvisioningJob, grant: Grant, *, error: str, retry_after: float | None,
                  now: datetime) -> None:
    if job.status != ProvisioningStatus.PENDING:
        raise access.AlreadyDecided(_closed_message(job))
    job.attempts += 1
    job.last_error = (error or "failed")[:500]
    if job.attempts < MAX_ATTEMPTS:
        job.next_attempt_at = now + backoff(job.attempts, retry_after=retry_after)
        session.add(job)
        _log(session, grant, job, "grant.provisioning_attempt_failed", actor=access.SYSTEM_ACTOR, now=now,
             after={"attempt": job.attempts, "error": job.last_error,
                    "next_attempt_at": job.next_attempt_at.isoformat()})
        return
    session.add(job)
    session.flush()
    _close(session, job, ProvisioningStatus.FAILED, now=now)
    _log(session, grant, job, "grant.provisioning_failed", actor=access.SYSTEM_ACTOR, now=now,
         after={"attempts": job.attempts, "error": job.last_error})
    _tell_owner(session, grant, job, "provisioning_failed", now)
    _redraw(session, grant, now)


def _close(session: Session, job: ProvisioningJob, target: ProvisioningStatus, *, now: datetime,
           confirmed_by: str = "") -> None:
    check_job_transition(job.status, target)
    # Compare-and-set on the status read under the lock: a job is closed once.
    moved = session.execute(
        update(ProvisioningJob).where(ProvisioningJob.id == job.id, ProvisioningJob.status == job.status)
        .values(status=target, completed_at=now, next_attempt_at=None, confirmed_by=confirmed_by[:32])
        .execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        raise access.AlreadyDecided("This change was already recorded.")
    session.refresh(job)


def _locked(session: Session, job_id: int) -> tuple[ProvisioningJob, Grant]:
    # The grant before its job, the order revokes and expiries take them in (grant, then job, then log).
    grant_id = session.exec(select(ProvisioningJob.grant_id).where(ProvisioningJob.id == job_id)).first()
    if grant_id is None:
        raise NotFound(f"No provisioning task has id {job_id}.")
    grant = session.exec(select(Grant).where(Grant.id == grant_id).with_for_update()).one()
    job = session.exec(select(ProvisioningJob).where(ProvisioningJob.id == job_id).with_for_update()).one()
    return job, grant


def _closed_message(job: ProvisioningJob) -> str:
    if job.status == ProvisioningStatus.CANCELLED:
        return "Nothing to do any more: the access was revoked before it was set up."
    if job.status == ProvisioningStatus.SUCCEEDED:
        return "This change was already confirmed."
    return f"This change has already {job.status.value}."


# ---- webhooks: claiming, the event and its signature ---------------------------------------------


def due_job_ids(*, session: Session, now: datetime, limit: int = BATCH) -> list[int]:
    """Ids of webhook jobs whose next attempt is due (manual jobs are never due: they wait for Done)."""
    return list(session.exec(select(ProvisioningJob.id).where(
        ProvisioningJob.next_attempt_at <= now, ProvisioningJob.status == ProvisioningStatus.PENDING,
        ProvisioningJob.connector_type == ConnectorType.WEBHOOK)
        .order_by(col(ProvisioningJob.next_attempt_at)).limit(limit)).all())


def claim_webhook_job(*, session: Session, job_id: int, now: datetime) -> WebhookCall | None:
    """Claim a due webhook job for one attempt (None if it is not due, done, or claimed by another worker).

    The claim pushes `next_attempt_at` past any call's timeout and is committed before the call, so two
    workers never send one job at once and no lock is held across the HTTP call."""
    won = session.execute(
        update(ProvisioningJob).where(
            ProvisioningJob.id == job_id, ProvisioningJob.status == ProvisioningStatus.PENDING,
            ProvisioningJob.connector_type == ConnectorType.WEBHOOK, ProvisioningJob.next_attempt_at <= now)
        .values(next_attempt_at=now + CLAIM_TTL, last_attempt_at=now)
        .execution_options(synchronize_session=False)).rowcount == 1
    if not won:
        return None
    job = session.get(ProvisioningJob, job_id)
    session.refresh(job)
    return WebhookCall(job_id=job.id, connector=job.connector, event=webhook_event(session=session, job=job, now=now))


def webhook_event(*, session: Session, job: ProvisioningJob, now: datetime) -> dict[str, Any]:
    """The JSON event a webhook receives. `expires_at` is when the access ends: for a grant, if this
    attempt sets it up now; for a revoke, when it was revoked."""
    grant = session.get(Grant, job.grant_id)
    asset = session.get(Asset, grant.asset_id)
    if job.action == ProvisioningAction.GRANT:
        expires_at = now + _duration(session, grant)
    else:
        expires_at = grant.ended_at or grant.expires_at
    return {
        "event": job.action.value,
        "grant_id": grant.id,
        "asset": {"slug": asset.slug, "kind": asset.kind.value},
        "grantee": grant.grantee_id,
        "level": grant.level.value,
        "expires_at": expires_at.isoformat(),
        "request_id": grant.request_id,
        "occurred_at": job.created_at.isoformat(),
    }


def event_body(event: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON with sorted keys, UTF-8."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """The X-Steward-Signature value: "v1=" and the hex HMAC-SHA256 of "v1:{timestamp}:{body}"."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return f"{SIGNATURE_VERSION}=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def verify(*, secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether `signature` is what `sign` gives (a receiver's check, in constant time)."""
    return hmac.compare_digest(sign(secret=secret, timestamp=timestamp, body=body), signature)


# ---- reading -------------------------------------------------------------------------------------


def jobs_of(*, session: Session, grant_id: int) -> list[ProvisioningJob]:
    """A grant's provisioning jobs, oldest first."""
    return list(session.exec(select(ProvisioningJob).where(ProvisioningJob.grant_id == grant_id)
                             .order_by(col(ProvisioningJob.id))).all())


# ---- internals -----------------------------------------------------------------------------------


def _duration(session: Session, grant: Grant) -> timedelta:
    request = session.get(AccessRequest, grant.request_id)
    return timedelta(hours=request.duration_hours) if request else grant.expires_at - grant.granted_at


def _tell_owner(session: Session, grant: Grant, job: ProvisioningJob, template: str, now: datetime) -> None:
    asset = session.get(Asset, grant.asset_id)
    # In the request's topic, so a change to the request or its grant redraws it with the rest.
    add_message(session=session, method=OutboxMethod.DM, user=asset.owner_id, now=now,
                topic=f"request:{grant.request_id}", payload={"template": template, "job_id": job.id})


def redraw_grant(*, session: Session, grant: Grant, now: datetime) -> None:
    """Queue redraws of every message about a grant's request and its provisioning."""
    _redraw(session, grant, now)


def _redraw(session: Session, grant: Grant, now: datetime) -> None:
    # The approvers' DMs, the owner's provisioning DMs and alerts (the request's topic), and the
    # requester's "approved" DM, which says whether access is being set up, is ready or failed.
    request = session.get(AccessRequest, grant.request_id)
    if request is None:
        return
    access.redraw(session, request, now)
    outcome = session.exec(select(OutboxMessage).where(OutboxMessage.topic == f"outcome:{request.id}",
                                                       OutboxMessage.method == OutboxMethod.DM)).all()
    for row in outcome:
        if row.payload.get("template") == "request_approved":
            add_message(session=session, method=OutboxMethod.UPDATE, updates_id=row.id, now=now,
                        topic=f"outcome:{request.id}", payload={"template": "redraw"})


def _log(session: Session, grant: Grant, job: ProvisioningJob, action: str, *, actor: str, now: datetime,
         after: dict[str, Any], before: dict[str, Any] | None = None) -> None:
    asset = session.get(Asset, grant.asset_id)
    audit.append_entry(session=session, actor=actor, action=action, subject_type="grant", subject_id=grant.id,
                       subject_slug=asset.slug if asset else "", before=before,
                       after={"job": job.id, "action": job.action.value, "connector": job.connector,
                              "grantee": grant.grantee_id, **after}, now=now)
