"""Anchors of the decision log: its head posted to Slack once a day, and the log verified against them.

The hash chain (workflows/audit.py) shows that no entry was changed, inserted, reordered or taken out
of the middle. It cannot show that the log was cut short, or cut short and written again: whoever
can write the database can also recompute every hash from the cut onwards. An anchor closes that
gap. Once a day the sweep posts the head hash, the entry count and the time to the policy's audit
channel, where nobody with only database access can change it, and keeps a row here naming the
Slack message (channel and ts, copied from the outbox row once it is delivered). `verify_log` with
anchors then requires every anchored entry to still exist with the anchored hash; the chain vouches
for everything before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from workflows import audit
from workflows.audit import ChainReport
from workflows.db import transaction
from workflows.errors import InvalidInput
from workflows.models import AuditAnchor, DecisionLogEntry, OutboxMessage
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy

ANCHOR_EVERY = timedelta(hours=24)
TEMPLATE = "audit_anchor"


# ---- anchoring --------------------------------------------------------------------------------------


def anchor_due(*, session: Session, now: datetime) -> bool:
    """True when the log has entries and no anchor was made in the 24 hours before `now`."""
    if audit.head_of_chain(session=session) is None:
        return False
    recent = session.exec(select(AuditAnchor.id).where(AuditAnchor.anchored_at > now - ANCHOR_EVERY)
                          .limit(1)).first()
    return recent is None


def create_anchor(*, session: Session, now: datetime, policy: Policy) -> AuditAnchor:
    """Anchor the log's head now: the anchor and the outbox row posting it, in the caller's transaction."""
    channel = policy.channels.audit
    if not channel:
        raise InvalidInput("No audit channel: set channels.audit in the policy to post anchors.")
    # The chain's write lock: no entry is appended between reading the head and counting.
    audit.lock_chain(session=session)
    head = audit.head_of_chain(session=session)
    if head is None:
        raise InvalidInput("The decision log is empty: there is nothing to anchor yet.")
    seq, head_hash = head
    count = session.exec(select(func.count()).select_from(DecisionLogEntry)).one()
    anchored_at = now.astimezone(UTC)
    message = add_message(
        session=session, method=OutboxMethod.POST, channel=channel, now=now, topic=f"audit_anchor:{seq}",
        payload={"template": TEMPLATE, "seq": seq, "head_hash": head_hash, "entry_count": count,
                 "anchored_at": anchored_at.isoformat()},
    )
    # The outbox row first, so the anchor is written once, complete (on PostgreSQL it can only ever
    # gain Slack's channel and ts afterwards).
    anchor = AuditAnchor(seq=seq, head_hash=head_hash, entry_count=count, anchored_at=anchored_at,
                         outbox_id=message.id)
    session.add(anchor)
    session.flush()
    return anchor


def anchor_if_due(*, session: Session, now: datetime, policy: Policy) -> AuditAnchor | None:
    """The sweep's daily anchor: create one if an audit channel is set and one is due, else nothing."""
    if not policy.channels.audit:
        return None
    # Taken before looking, so two runs at once anchor once: the second waits, then sees the first's.
    # (SQLite's write transactions are already serialised.)
    audit.lock_chain(session=session)
    if not anchor_due(session=session, now=now):
        return None
    return create_anchor(session=session, now=now, policy=policy)


def record_receipt(*, session: Session, message: OutboxMessage) -> bool:
    """Copy Slack's channel and ts of a delivered anchor post onto its anchor; False for other messages."""
    if (message.payload or {}).get("template") != TEMPLATE or not message.sent_ts:
        return False
    result = session.exec(
        update(AuditAnchor).where(AuditAnchor.outbox_id == message.id, AuditAnchor.ts == "")
        .values(channel=message.sent_channel, ts=message.sent_ts)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# ---- verifying --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorReport:
    """The log checked against the anchors: how many there are, and the first that it contradicts."""

    checked: int
    posted: int  # anchors Slack confirmed (a channel and ts stored)
    latest_at: datetime | None = None
    first_bad_seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when every anchored entry is still there with the anchored hash."""
        return self.first_bad_seq is None


@dataclass(frozen=True)
class LogVerdict:
    """`steward audit verify`: the chain, the anchors when asked for, and the first problem of either."""

    chain: ChainReport
    anchors: AnchorReport | None = None

    @property
    def first_bad_seq(self) -> int | None:
        """The earliest entry either check found wrong."""
        seqs = [r.first_bad_seq for r in (self.chain, self.anchors) if r is not None and not r.ok]
        return min(seqs) if seqs else None

    @property
    def problem(self) -> str:
        """What is wrong with the entry `first_bad_seq`, as one line ("" when all is well)."""
        for report in (self.anchors, self.chain):
            if report is not None and not report.ok and report.first_bad_seq == self.first_bad_seq:
                return f"entry {report.first_bad_seq}: {report.problem}"
        return ""

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.first_bad_seq is None


def verify_log(*, engine: Engine, anchors: bool = False, batch_size: int = 5000) -> LogVerdict:
    """Walk the chain (a batch per transaction), then, if asked, check it against every anchor."""
    chain = audit.verify_chain_batched(engine=engine, batch_size=batch_size)
    if not anchors:
        return LogVerdict(chain=chain)
    with transaction(engine) as session:
        return LogVerdict(chain=chain, anchors=check_anchors(session=session, chain=chain))


def check_anchors(*, session: Session, chain: ChainReport) -> AnchorReport:
    """Check the log against every anchor, given the chain's report: each anchored entry must exist with
    the anchored hash, and the log must hold at least the anchored count.

    The chain vouches for its first `chain.count` entries, so one lookup per anchor is enough: if the
    anchored entry matches, so does everything before it. Anchors beyond a broken chain are skipped
    (the chain's own problem comes first)."""
    checked = posted = 0
    latest_at: datetime | None = None
    matched_seq = 0  # the highest anchored entry that still matches
    query = select(AuditAnchor).order_by(col(AuditAnchor.seq), col(AuditAnchor.id))
    for anchor in session.exec(query.execution_options(yield_per=500)):
        checked += 1
        posted += bool(anchor.ts)
        latest_at = max(latest_at, anchor.anchored_at) if latest_at else anchor.anchored_at
        problem = _contradiction(session, anchor, chain, matched_seq)
        if problem is not None:
            bad_seq, text = problem
            return AnchorReport(checked=checked, posted=posted, latest_at=latest_at, first_bad_seq=bad_seq,
                                problem=text)
        if anchor.seq <= chain.count:
            matched_seq = max(matched_seq, anchor.seq)
    return AnchorReport(checked=checked, posted=posted, latest_at=latest_at)


def _contradiction(session: Session, anchor: AuditAnchor, chain: ChainReport,
                   matched_seq: int) -> tuple[int, str] | None:
    if anchor.seq > chain.count:
        if not chain.ok:
            return None  # past the point where the chain broke: nothing to compare against
        return _truncated(anchor, chain)
    stored = session.exec(select(DecisionLogEntry.hash).where(DecisionLogEntry.seq == anchor.seq)).first()
    if stored != anchor.head_hash:
        since = f"entries {matched_seq + 1}-{anchor.seq}" if matched_seq + 1 < anchor.seq else f"entry {anchor.seq}"
        return anchor.seq, (
            f"rewritten: its hash is {_short(stored)} but {_describe(anchor)} recorded {_short(anchor.head_hash)} "
            f"(the log was changed in {since} and the later hashes recomputed)")
    if anchor.entry_count > chain.count and chain.ok:
        return _truncated(anchor, chain)
    return None


def _truncated(anchor: AuditAnchor, chain: ChainReport) -> tuple[int, str]:
    return chain.count + 1, (
        f"missing: the log ends at entry {chain.count}, but {_describe(anchor)} recorded "
        f"{anchor.entry_count} entries up to entry {anchor.seq} (the log was truncated)")


def _describe(anchor: AuditAnchor) -> str:
    when = anchor.anchored_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = f"in {anchor.channel} at ts {anchor.ts}" if anchor.ts else "(not yet confirmed by Slack)"
    return f"the anchor of {when} {where}"


def _short(hash_: str | None) -> str:
    return f"{hash_[:16]}…" if hash_ else "missing"
