"""SQLModel tables: assets, lineage edges, classifications, the decision log, the outbox, locks, access
requests and grants, and the provisioning jobs that carry grants out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlmodel import Field, SQLModel

from workflows.enums import (
    AccessLevel, AssetKind, AssetStatus, ConnectorType, EdgeType, GrantStatus, ProvisioningAction,
    ProvisioningStatus, RequestStatus, RiskTier, Sensitivity,
)
from workflows.types import StrEnumType, UtcDateTime


def _utc_column(**kwargs) -> Any:
    return Field(sa_column=Column(UtcDateTime(), **kwargs))


def _enum_field(enum_cls, default: Any = ..., *, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=default, sa_type=StrEnumType(enum_cls), nullable=nullable, index=index)


class AssetBase(SQLModel):
    """Fields shared by every kind of asset."""

    slug: str = Field(max_length=64, index=True, unique=True)
    kind: AssetKind = _enum_field(AssetKind, index=True)
    name: str = Field(max_length=150)
    description: str = Field(default="", max_length=3000)
    owner_id: str = Field(max_length=32, index=True)
    team: str = Field(default="", max_length=100)
    location_uri: str = Field(default="", max_length=500)
    version: str = Field(default="", max_length=64)
    license: str = Field(default="", max_length=100)
    sensitivity: Sensitivity = _enum_field(Sensitivity, Sensitivity.INTERNAL)
    contains_personal_data: bool = False
    status: AssetStatus = _enum_field(AssetStatus, AssetStatus.ACTIVE, index=True)


class Asset(AssetBase, table=True):
    """One AI asset in the inventory. `details` holds the kind-specific fields."""

    id: int | None = Field(default=None, primary_key=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The system's own tier from its questionnaire; only AI systems have one.
    risk_tier: RiskTier | None = _enum_field(RiskTier, None, nullable=True)
    # The strictest tier of the systems that depend on this asset, kept current on every change
    # so reviews and exports can filter by it with an index instead of walking the graph.
    effective_tier: RiskTier | None = _enum_field(RiskTier, None, nullable=True, index=True)
    created_by: str = Field(max_length=32)
    created_at: datetime = _utc_column(nullable=False)
    updated_at: datetime = _utc_column(nullable=False)
    last_reviewed_at: datetime | None = _utc_column(nullable=True)
    next_review_due: datetime | None = _utc_column(nullable=True, index=True)


class Edge(SQLModel, table=True):
    """A typed lineage edge: `source` <type> `target`, e.g. model trained_on dataset."""

    __table_args__ = (
        UniqueConstraint("source_id", "target_id", "type", name="uq_edge"),
        Index("ix_edge_target", "target_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    target_id: int = Field(foreign_key="asset.id", ondelete="CASCADE")
    type: EdgeType = _enum_field(EdgeType)
    created_by: str = Field(max_length=32)
    created_at: datetime = _utc_column(nullable=False)


class Classification(SQLModel, table=True):
    """One answered risk questionnaire for an AI system; the newest is in force."""

    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    tier: RiskTier = _enum_field(RiskTier)
    answers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    transparency_flags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    rationale: str = Field(default="", max_length=3000)
    classified_by: str = Field(max_length=32)
    classified_at: datetime = _utc_column(nullable=False)


class DecisionLogEntry(SQLModel, table=True):
    """An append-only, hash-chained record of one decision or change."""

    __tablename__ = "decision_log"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _utc_column(nullable=False, index=True)
    actor: str = Field(max_length=32)
    action: str = Field(max_length=64, index=True)
    subject_type: str = Field(max_length=32)
    subject_id: int | None = Field(default=None, index=True)
    subject_slug: str = Field(default="", max_length=64)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class OutboxMessage(SQLModel, table=True):
    """A Slack message a committed change implies, delivered after commit and retried until sent."""

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _utc_column(nullable=False)
    # "post" (chat.postMessage), "ephemeral", "update" (chat.update of an earlier row) or "dm".
    method: str = Field(max_length=16)
    channel: str = Field(default="", max_length=32)
    user: str = Field(default="", max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    next_attempt_at: datetime | None = _utc_column(nullable=True, index=True)
    # When the sweep last handed the row to the broker; a worker's claim clears it. Until then, or
    # until the claim window passes (the task was lost), later sweeps leave the row alone.
    queued_at: datetime | None = _utc_column(nullable=True)
    sent_at: datetime | None = _utc_column(nullable=True)
    sent_channel: str = Field(default="", max_length=32)
    sent_ts: str = Field(default="", max_length=32)
    last_error: str = Field(default="", max_length=500)
    # What the message is about ("request:42"), so a change can find and redraw its messages.
    topic: str = Field(default="", max_length=64, index=True)
    # For method "update": the earlier row whose Slack message is redrawn with chat.update.
    updates_id: int | None = Field(default=None, index=True)


class QueuedWork(SQLModel, table=True):
    """A due item (a reminder, an expiry, a review nudge, a webhook job…) the sweep has handed to the
    broker and no worker has taken yet; later sweeps leave it alone while this row is fresh."""

    __tablename__ = "queued_work"

    kind: str = Field(primary_key=True, max_length=32)
    item_id: int = Field(primary_key=True)
    queued_at: datetime = _utc_column(nullable=False, index=True)


class LeaderLock(SQLModel, table=True):
    """A lease held by at most one scheduler at a time."""

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: datetime = _utc_column(nullable=False)


class AccessRequest(SQLModel, table=True):
    """Someone asking for access to an asset; the deadline columns drive reminders and expiry."""

    __tablename__ = "access_request"

    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    requester_id: str = Field(max_length=32, index=True)
    level: AccessLevel = _enum_field(AccessLevel)
    duration_hours: int
    justification: str = Field(max_length=1000)
    emergency: bool = False
    status: RequestStatus = _enum_field(RequestStatus, RequestStatus.PENDING, index=True)
    # The grant this request would extend, when it is a renewal.
    renews_grant_id: int | None = Field(default=None, index=True)
    created_at: datetime = _utc_column(nullable=False)
    resolved_at: datetime | None = _utc_column(nullable=True)
    resolved_by: str = Field(default="", max_length=32)
    resolution_note: str = Field(default="", max_length=1000)
    reminders_sent: int = 0
    next_reminder_at: datetime | None = _utc_column(nullable=True, index=True)
    escalate_at: datetime | None = _utc_column(nullable=True, index=True)
    expires_at: datetime | None = _utc_column(nullable=True, index=True)


class ApprovalStep(SQLModel, table=True):
    """One ordered step of a request's approval, satisfied by one eligible approver."""

    __tablename__ = "approval_step"
    __table_args__ = (UniqueConstraint("request_id", "position", name="uq_step_position"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="access_request.id", index=True, ondelete="CASCADE")
    position: int
    group: str = Field(max_length=64)
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Why the step was routed elsewhere (no eligible approver left, or escalation), if it was.
    rerouted: str = Field(default="", max_length=300)
    approved_by: str = Field(default="", max_length=32)
    approved_at: datetime | None = _utc_column(nullable=True)


class Decision(SQLModel, table=True):
    """One approver's decision on one request: the unique key makes a second click a no-op."""

    __table_args__ = (UniqueConstraint("request_id", "approver_id", name="uq_decision_approver"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="access_request.id", index=True, ondelete="CASCADE")
    step_id: int | None = Field(default=None, foreign_key="approval_step.id")
    approver_id: str = Field(max_length=32)
    outcome: str = Field(max_length=16)
    reason: str = Field(default="", max_length=1000)
    decided_at: datetime = _utc_column(nullable=False)


class Grant(SQLModel, table=True):
    """Access a person holds to an asset until it expires or is revoked."""

    __tablename__ = "access_grant"
    # The sweep asks "which active grants end soon": status first keeps ended grants out of the scan.
    __table_args__ = (Index("ix_access_grant_status_expires_at", "status", "expires_at"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="access_request.id", unique=True)
    asset_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    grantee_id: str = Field(max_length=32, index=True)
    level: AccessLevel = _enum_field(AccessLevel)
    emergency: bool = False
    status: GrantStatus = _enum_field(GrantStatus, GrantStatus.ACTIVE, index=True)
    # When access began: the approval, or, with a provisioning connector, when the connector set it up.
    granted_at: datetime = _utc_column(nullable=False)
    expires_at: datetime = _utc_column(nullable=False, index=True)
    warned_at: datetime | None = _utc_column(nullable=True)
    ended_at: datetime | None = _utc_column(nullable=True)
    ended_by: str = Field(default="", max_length=32)
    end_reason: str = Field(default="", max_length=1000)


class ProvisioningJob(SQLModel, table=True):
    """One grant or revoke a connector has to carry out, and how that went.

    A webhook job is due at `next_attempt_at` (the sweep re-enqueues it); a manual job waits for the
    owner's Done and is never due. One job per grant and action, so a retried change writes none twice.
    """

    __tablename__ = "provisioning_job"
    __table_args__ = (UniqueConstraint("grant_id", "action", name="uq_provisioning_job_action"),)

    id: int | None = Field(default=None, primary_key=True)
    grant_id: int = Field(foreign_key="access_grant.id", ondelete="CASCADE")
    action: ProvisioningAction = _enum_field(ProvisioningAction)
    # The connector's name in the policy, and its type when the job was written (what a job does is
    # fixed then; a webhook's url and secret are looked up when it is sent).
    connector: str = Field(max_length=64)
    connector_type: ConnectorType = _enum_field(ConnectorType)
    status: ProvisioningStatus = _enum_field(ProvisioningStatus, ProvisioningStatus.PENDING, index=True)
    attempts: int = 0
    created_at: datetime = _utc_column(nullable=False)
    next_attempt_at: datetime | None = _utc_column(nullable=True, index=True)
    # When the last webhook attempt started: set means the event may have reached the other side.
    last_attempt_at: datetime | None = _utc_column(nullable=True)
    last_error: str = Field(default="", max_length=500)
    completed_at: datetime | None = _utc_column(nullable=True)
    # Who confirmed it: the owner or admin who pressed Done, or "steward" for a webhook's 2xx.
    confirmed_by: str = Field(default="", max_length=32)


class AuditAnchor(SQLModel, table=True):
    """The decision log's head as posted to the audit channel: Slack keeps a copy nobody here can edit.

    Written with the outbox row that posts it; `channel` and `ts` are Slack's answer, filled in once
    that row is delivered (see workflows/anchors.py). Never updated otherwise, never deleted.
    """

    __tablename__ = "audit_anchor"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(index=True)
    head_hash: str = Field(max_length=64)
    entry_count: int
    anchored_at: datetime = _utc_column(nullable=False, index=True)
    channel: str = Field(default="", max_length=32)
    ts: str = Field(default="", max_length=32)
    outbox_id: int | None = Field(default=None, index=True)


class ReviewNudge(SQLModel, table=True):
    """One owner's weekly review nudge: when it is next due (09:00 their time, a weekday) and when Slack
    last accepted one. The sweep reads `next_nudge_at` through its index."""

    __tablename__ = "review_nudge"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(max_length=32, unique=True)
    tz: str = Field(default="UTC", max_length=64)  # the owner's Slack timezone, cached from users.info
    next_nudge_at: datetime | None = _utc_column(nullable=True, index=True)
    queued_at: datetime | None = _utc_column(nullable=True)        # when the latest nudge was written
    last_nudged_at: datetime | None = _utc_column(nullable=True)   # when Slack accepted the latest nudge
    outbox_id: int | None = Field(default=None, index=True)        # the latest nudge's outbox row


class AssetReview(SQLModel, table=True):
    """Review bookkeeping of one asset: snoozes this review period, the overdue escalation, the last click."""

    __tablename__ = "asset_review"

    asset_id: int = Field(foreign_key="asset.id", primary_key=True, ondelete="CASCADE")
    snoozes: int = 0
    escalated_for: datetime | None = _utc_column(nullable=True)  # the due date whose overdue period escalated
    escalated_at: datetime | None = _utc_column(nullable=True)
    last_action: str = Field(default="", max_length=32)
    last_action_by: str = Field(default="", max_length=32)
    last_action_at: datetime | None = _utc_column(nullable=True)


class RecertSchedule(SQLModel, table=True):
    """When an asset's grants are next recertified by its owner; every asset with a live grant has one.
    The sweep reads `next_due_at` through its index; `honoured_seq` is the last
    `grant.recertification_requested` log entry that started a campaign. A `provisional` row was made when
    a grant went live, due as early as any tier could be; its first campaign check settles the real date."""

    __tablename__ = "recert_schedule"

    asset_id: int = Field(foreign_key="asset.id", primary_key=True, ondelete="CASCADE")
    next_due_at: datetime = _utc_column(nullable=False, index=True)
    honoured_seq: int = 0
    provisional: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})


class RecertCampaign(SQLModel, table=True):
    """One recertification of one asset's active grants, for one period (`period`: the due date)."""

    __tablename__ = "recert_campaign"
    __table_args__ = (UniqueConstraint("asset_id", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    owner_id: str = Field(max_length=32)
    period: datetime = _utc_column(nullable=False)
    started_at: datetime = _utc_column(nullable=False)
    escalate_at: datetime | None = _utc_column(nullable=True, index=True)  # cleared once escalated or done
    escalated_at: datetime | None = _utc_column(nullable=True)
    completed_at: datetime | None = _utc_column(nullable=True)


class RecertItem(SQLModel, table=True):
    """One grant of a campaign and the owner's decision on it ("" while undecided; keep or revoke)."""

    __tablename__ = "recert_item"
    __table_args__ = (UniqueConstraint("campaign_id", "grant_id"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="recert_campaign.id", index=True, ondelete="CASCADE")
    grant_id: int = Field(foreign_key="access_grant.id", index=True, ondelete="CASCADE")
    outcome: str = Field(default="", max_length=16)
    decided_by: str = Field(default="", max_length=32)
    decided_at: datetime | None = _utc_column(nullable=True)


class OrphanedAsset(SQLModel, table=True):
    """An asset whose owner was deactivated or left: flagged until someone takes ownership."""

    __tablename__ = "orphaned_asset"

    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    former_owner_id: str = Field(max_length=32, index=True)
    flagged_at: datetime = _utc_column(nullable=False)
    reason: str = Field(default="", max_length=64)
    open: bool = Field(default=True, index=True)  # True until someone takes ownership
    taken_by: str = Field(default="", max_length=32)
    taken_at: datetime | None = _utc_column(nullable=True)
