"""The decision log: one append-only table whose entries are chained by SHA-256 hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from workflows.models import DecisionLogEntry

GENESIS_HASH = "0" * 64
# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_KEY = 0x5E_7A_2D


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so the same entry always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_body(entry: DecisionLogEntry) -> dict[str, Any]:
    """The fields of an entry that its hash covers."""
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "subject_slug": entry.subject_slug,
        "before": entry.before,
        "after": entry.after,
    }


def compute_hash(prev_hash: str, entry: DecisionLogEntry) -> str:
    """SHA-256 over the previous hash and the entry's canonical JSON."""
    return hashlib.sha256((prev_hash + canonical_json(entry_body(entry))).encode("utf-8")).hexdigest()


def append_entry(
    *,
    session: Session,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: int | None,
    subject_slug: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    now: datetime,
) -> DecisionLogEntry:
    """Append one entry to the chain inside the caller's transaction."""
    _lock_chain(session)
    head = session.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.seq.desc()).limit(1)).first()
    entry = DecisionLogEntry(
        seq=(head.seq + 1) if head else 1,
        # Hash the time as it will read back from the database (UTC), or the chain would not verify.
        at=now.astimezone(UTC),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        subject_slug=subject_slug,
        before=_jsonable(before),
        after=_jsonable(after),
        prev_hash=head.hash if head else GENESIS_HASH,
        hash="",
    )
    entry.hash = compute_hash(entry.prev_hash, entry)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain."""

    count: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when every entry links to the one before it."""
        return self.first_bad_seq is None


def verify_chain(*, session: Session, batch_size: int = 5000) -> ChainReport:
    """Walk the whole chain in order and report the first entry that does not check out."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    last_seq = 0
    while True:
        batch = session.exec(
            select(DecisionLogEntry).where(DecisionLogEntry.seq > last_seq)
            .order_by(DecisionLogEntry.seq).limit(batch_size)
        ).all()
        if not batch:
            return ChainReport(count=count, head_hash=prev_hash)
        for entry in batch:
            problem = _check(entry, expected_seq, prev_hash)
            if problem:
                return ChainReport(count=count, head_hash=prev_hash, first_bad_seq=entry.seq, problem=problem)
            prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
        last_seq = batch[-1].seq


def _check(entry: DecisionLogEntry, expected_seq: int, prev_hash: str) -> str:
    if entry.seq != expected_seq:
        return f"expected entry {expected_seq}, found {entry.seq} (an entry was deleted or inserted)"
    if entry.prev_hash != prev_hash:
        return "its previous hash does not match the entry before it"
    if compute_hash(prev_hash, entry) != entry.hash:
        return "its contents do not match its hash (the entry was modified)"
    return ""


def _lock_chain(session: Session) -> None:
    # PostgreSQL: serialise appenders so they never read the same head. SQLite transactions
    # already begin IMMEDIATE (see db.py), which serialises writers the same way.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Round-trip through canonical JSON so what is hashed is exactly what the JSON column returns.
    return None if value is None else json.loads(canonical_json(value))
