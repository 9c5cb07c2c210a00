"""Who had access to what: the active grants now (from the tables), or as of any past instant
(replayed from the decision log alone, so the answer does not depend on tables that change).

The replay reads these entries, in seq order, up to the instant:

    access.emergency_requested  request R was break-glass                  -> its grant is an emergency
    access.approved_step        actor approved one step of request R        -> an approver of R
    access.approved             actor resolved R (note: "", auto, ...)      -> the approver when R had no steps
    access.granted  (grant G)   new G: asset, grantee, level, expires_at    -> G exists (active or provisioning)
                    (known G)   a renewal R2 extended G: new expires_at     -> R2's approvers join G's
    grant.provisioned (G)       the connector set G up: granted now         -> G active, new expires_at
    grant.revoked / .expired    G ended                                     -> G revoked / expired

Approved by: the people who approved the steps of the grant's requests (the original and each renewal
that extended it); a request without steps (auto-approved, break-glass) names whoever resolved it, and
its note ("auto", "break-glass") goes in `approval`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from workflows.enums import AccessLevel, GrantStatus, RequestStatus
from workflows.exports.common import BATCH_SIZE, iso
from workflows.exports.decisions import LOG_TABLE, stream_log
from workflows.models import AccessRequest, ApprovalStep, Asset, Grant

CSV_COLUMNS = ("grant_id", "asset", "grantee", "level", "granted_at", "expires_at", "approved_by", "approval",
               "emergency", "status")
REPLAYED_ACTIONS = ("access.emergency_requested", "access.approved_step", "access.approved", "access.granted",
                    "grant.provisioned", "grant.revoked", "grant.expired")


@dataclass(frozen=True)
class AccessRow:
    """One grant as an access export shows it."""

    grant_id: int
    asset: str
    grantee: str
    level: AccessLevel
    status: GrantStatus
    granted_at: datetime
    expires_at: datetime
    approved_by: tuple[str, ...]
    approval: str
    emergency: bool

    def csv_row(self) -> list[str]:
        """The row as CSV cells, in CSV_COLUMNS order."""
        return [str(self.grant_id), self.asset, self.grantee, self.level.value, iso(self.granted_at),
                iso(self.expires_at), " ".join(self.approved_by), self.approval,
                "true" if self.emergency else "false", self.status.value]


# ---- now, from the tables ------------------------------------------------------------------------


def count_active_grants(*, session: Session) -> int:
    """How many grants are active now."""
    return session.exec(select(func.count()).select_from(Grant).where(Grant.status == GrantStatus.ACTIVE)).one()


def current_access(*, session: Session, batch_size: int = BATCH_SIZE,
                   statuses: tuple[GrantStatus, ...] = (GrantStatus.ACTIVE,)) -> Iterator[AccessRow]:
    """Grants in `statuses` (active by default) in id order, read in batches (keyset on id)."""
    last_id = 0
    while True:
        rows = session.exec(
            select(Grant, Asset.slug).join(Asset, Asset.id == Grant.asset_id)
            .where(Grant.id > last_id, col(Grant.status).in_(statuses)).order_by(Grant.id).limit(batch_size)
        ).all()
        if not rows:
            return
        approvals = _table_approvals(session, [grant for grant, _ in rows])
        for grant, slug in rows:
            approved_by, approval = approvals.get(grant.id, ((), ""))
            yield AccessRow(grant_id=grant.id, asset=slug, grantee=grant.grantee_id, level=grant.level,
                            status=grant.status, granted_at=grant.granted_at, expires_at=grant.expires_at,
                            approved_by=approved_by, approval=approval, emergency=grant.emergency)
        last_id = rows[-1][0].id


def _table_approvals(session: Session, grants: list[Grant]) -> dict[int, tuple[tuple[str, ...], str]]:
    # The requests behind each grant: the one that created it, and approved renewals that extended it
    # (a renewal approved after the grant ended created a grant of its own instead).
    grant_ids = [g.id for g in grants]
    requests_of: dict[int, list[int]] = {g.id: [g.request_id] for g in grants}
    renewals = session.exec(
        select(AccessRequest.id, AccessRequest.renews_grant_id)
        .where(col(AccessRequest.renews_grant_id).in_(grant_ids), AccessRequest.status == RequestStatus.APPROVED)
    ).all()
    own_grant = set(session.exec(select(Grant.request_id).where(
        col(Grant.request_id).in_([request_id for request_id, _ in renewals]))).all()) if renewals else set()
    for request_id, grant_id in renewals:
        if request_id not in own_grant:
            requests_of[grant_id].append(request_id)
    request_ids = [r for ids in requests_of.values() for r in ids]
    approvers: dict[int, set[str]] = defaultdict(set)
    for request_id, approved_by in session.exec(
            select(ApprovalStep.request_id, ApprovalStep.approved_by)
            .where(col(ApprovalStep.request_id).in_(request_ids), ApprovalStep.approved_by != "")).all():
        approvers[request_id].add(approved_by)
    resolved = {request_id: (by, note) for request_id, by, note in session.exec(
        select(AccessRequest.id, AccessRequest.resolved_by, AccessRequest.resolution_note)
        .where(col(AccessRequest.id).in_(request_ids))).all()}
    return {grant_id: _approval([(approvers.get(r, set()), *resolved.get(r, ("", ""))) for r in ids])
            for grant_id, ids in requests_of.items()}


def _approval(requests: list[tuple[set[str], str, str]]) -> tuple[tuple[str, ...], str]:
    # (step approvers, resolver, note) per request -> (approved by, sorted and unique; the notes).
    people: set[str] = set()
    notes: list[str] = []
    for step_approvers, resolver, note in requests:
        if step_approvers:
            people |= step_approvers
        else:
            people |= {resolver} if resolver else set()
            if note and note not in notes:
                notes.append(note)
    return tuple(sorted(people)), " ".join(notes)


# ---- as of an instant, from the decision log -----------------------------------------------------


@dataclass
class _Request:
    approvers: set[str] = field(default_factory=set)
    resolver: str = ""
    note: str = ""
    emergency: bool = False


@dataclass
class _GrantState:
    grant_id: int
    asset: str
    grantee: str
    level: AccessLevel
    status: GrantStatus
    granted_at: datetime
    expires_at: datetime
    request_ids: list[int]


def replay_grants(*, engine: Engine, as_of: datetime, batch_size: int = BATCH_SIZE) -> list[AccessRow]:
    """Every grant that existed at `as_of`, in any status, as the decision log tells it (id order)."""
    requests: dict[int, _Request] = defaultdict(_Request)
    grants: dict[int, _GrantState] = {}
    where = [LOG_TABLE.c.action.in_(REPLAYED_ACTIONS), LOG_TABLE.c.at <= as_of]
    for entry in stream_log(engine=engine, where=where, batch_size=batch_size):
        _apply(entry, requests, grants)
    rows = []
    for state in sorted(grants.values(), key=lambda s: s.grant_id):
        wanted = [requests[r] for r in state.request_ids]
        approved_by, approval = _approval([(r.approvers, r.resolver, r.note) for r in wanted])
        emergency = any(r.emergency for r in wanted[:1])  # a renewal never turns a grant into an emergency
        rows.append(AccessRow(grant_id=state.grant_id, asset=state.asset, grantee=state.grantee, level=state.level,
                              status=state.status, granted_at=state.granted_at, expires_at=state.expires_at,
                              approved_by=approved_by, approval=approval, emergency=emergency))
    return rows


def access_as_of(*, engine: Engine, as_of: datetime, batch_size: int = BATCH_SIZE,
                 statuses: tuple[GrantStatus, ...] = (GrantStatus.ACTIVE,)) -> list[AccessRow]:
    """Grants that were in `statuses` (active by default) at `as_of`, replayed from the log."""
    return [row for row in replay_grants(engine=engine, as_of=as_of, batch_size=batch_size)
            if row.status in statuses]


def _apply(entry: Any, requests: dict[int, _Request], grants: dict[int, _GrantState]) -> None:
    after: dict[str, Any] = entry.after or {}
    action = entry.action
    if action.startswith("access.") and action != "access.granted":
        request = requests[after.get("request", entry.subject_id)]
        if action == "access.emergency_requested":
            request.emergency = True
        elif action == "access.approved_step":
            request.approvers.add(entry.actor)
        elif action == "access.approved":
            request.resolver, request.note = entry.actor, after.get("note", "")
        return
    grant_id = entry.subject_id
    if action == "access.granted":
        expires_at = _when(after["expires_at"])
        state = grants.get(grant_id)
        if state is None:
            grants[grant_id] = _GrantState(
                grant_id=grant_id, asset=entry.subject_slug, grantee=after["grantee"],
                level=AccessLevel(after["level"]), status=GrantStatus(after.get("status", GrantStatus.ACTIVE)),
                granted_at=entry.at, expires_at=expires_at, request_ids=[after["request"]])
        else:  # a renewal extended an active grant
            state.expires_at = expires_at
            state.request_ids.append(after["request"])
        return
    state = grants.get(grant_id)
    if state is None:
        return  # the grant came before the log did; nothing to replay it from
    if action == "grant.provisioned":
        state.status, state.granted_at = GrantStatus.ACTIVE, entry.at
        if after.get("expires_at"):
            state.expires_at = _when(after["expires_at"])
    elif action in ("grant.revoked", "grant.expired"):
        state.status = GrantStatus(action.removeprefix("grant."))


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
