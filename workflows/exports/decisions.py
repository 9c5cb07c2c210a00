"""The decision log, streamed in seq order with its hashes, so an auditor can re-check the chain.

On SQLite, reading is keyset pagination on `seq` (`WHERE seq > last ORDER BY seq LIMIT n`), one short
transaction per batch: memory stays flat however long the log is, and an export never holds the write
lock for more than one batch. The log is append-only, so batches read in separate transactions still
form one consistent snapshot: the export stops at the head it saw when it began. PostgreSQL streams one
query through a server-side cursor instead (a reader holds no writer up there), just as flat.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select
from sqlmodel import Session

from workflows import audit
from workflows.db import transaction
from workflows.enums import RiskTier
from workflows.exports.common import BATCH_SIZE
from workflows.models import AccessRequest, Asset, DecisionLogEntry, Grant

# The fields the hash covers (workflows.audit.entry_body), then the chain's two hashes.
BODY_FIELDS = ("seq", "at", "actor", "action", "subject_type", "subject_id", "subject_slug", "before", "after")
FIELDS = BODY_FIELDS + ("prev_hash", "hash")
LOG_TABLE = DecisionLogEntry.__table__
_COLUMNS = [LOG_TABLE.c[name] for name in FIELDS]
# Subject types whose subject id leads to an asset; entries about anything else are matched by slug.
_SUBJECTS_WITH_ASSETS = ("asset", "access_request", "grant")


@dataclass(frozen=True)
class DecisionFilter:
    """Which entries a decisions export keeps; `asset_id` and `tier` match entries about an asset,
    its access requests and its grants (the tier is the asset's current effective tier)."""

    since: datetime | None = None
    until: datetime | None = None
    asset_id: int | None = None
    tier: RiskTier | None = None


def head_seq(*, session: Session) -> int:
    """The seq of the newest entry (0 for an empty log)."""
    return session.execute(select(func.max(LOG_TABLE.c.seq))).scalar_one() or 0


def count_decisions(*, session: Session, filters: DecisionFilter, up_to_seq: int) -> int:
    """How many entries up to `up_to_seq` the filter keeps (for a progress bar)."""
    where = [LOG_TABLE.c.seq <= up_to_seq, *conditions(filters)]
    return session.execute(select(func.count()).select_from(LOG_TABLE).where(*where)).scalar_one()


def stream_decisions(*, engine: Engine, filters: DecisionFilter = DecisionFilter(), up_to_seq: int | None = None,
                     batch_size: int = BATCH_SIZE) -> Iterator[dict[str, Any]]:
    """Each entry the filter keeps, in seq order, as a dict of FIELDS with `at` exactly as it was hashed."""
    for row in stream_log(engine=engine, where=conditions(filters), up_to_seq=up_to_seq, batch_size=batch_size):
        yield record(row)


def stream_log(*, engine: Engine, where: Sequence[ColumnElement[bool]] = (), up_to_seq: int | None = None,
               batch_size: int = BATCH_SIZE) -> Iterator[Any]:
    """Raw log rows (attribute access by field name) matching `where`, in seq order, batch by batch."""
    if up_to_seq is None:
        with transaction(engine) as session:
            up_to_seq = head_seq(session=session)
    if engine.dialect.name == "postgresql":
        # One statement through a server-side cursor, `batch_size` rows per round trip: a reader holds no
        # writer up on PostgreSQL, and a keyset query per batch makes the server plan and seek again each
        # time (without statistics, sorting the whole rest of the log every time).
        with engine.connect() as conn:
            yield from conn.execution_options(yield_per=batch_size).execute(
                select(*_COLUMNS).where(LOG_TABLE.c.seq <= up_to_seq, *where).order_by(LOG_TABLE.c.seq))
        return
    last = 0
    while last < up_to_seq:
        with transaction(engine) as session:
            rows = session.execute(
                select(*_COLUMNS).where(LOG_TABLE.c.seq > last, LOG_TABLE.c.seq <= up_to_seq, *where)
                .order_by(LOG_TABLE.c.seq).limit(batch_size)
            ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def record(row: Any) -> dict[str, Any]:
    """One entry for export: the hashed body (from workflows.audit, so it cannot drift) and both hashes."""
    return {**audit.entry_body(row), "prev_hash": row.prev_hash, "hash": row.hash}


def csv_row(entry: dict[str, Any]) -> list[str]:
    """An exported entry as CSV cells: `before` and `after` as canonical JSON, None as an empty cell."""
    cells = []
    for name in FIELDS:
        value = entry[name]
        if name in ("before", "after"):
            cells.append("" if value is None else audit.canonical_json(value))
        else:
            cells.append("" if value is None else str(value))
    return cells


def jsonl_line(entry: dict[str, Any]) -> str:
    """An exported entry as one JSON line, keys in FIELDS order."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def conditions(filters: DecisionFilter) -> list[ColumnElement[bool]]:
    """SQL conditions on the decision log for a filter."""
    found: list[ColumnElement[bool]] = []
    if filters.since is not None:
        found.append(LOG_TABLE.c.at >= filters.since)
    if filters.until is not None:
        found.append(LOG_TABLE.c.at <= filters.until)
    if filters.asset_id is not None:
        found.append(about_assets(select(Asset.id).where(Asset.id == filters.asset_id)))
    if filters.tier is not None:
        found.append(about_assets(select(Asset.id).where(Asset.effective_tier == filters.tier)))
    return found


def about_assets(asset_ids) -> ColumnElement[bool]:
    """Entries about the assets `asset_ids` (a SELECT of ids): the assets, their requests and grants."""
    subject_type, subject_id = LOG_TABLE.c.subject_type, LOG_TABLE.c.subject_id
    request_ids = select(AccessRequest.id).where(AccessRequest.asset_id.in_(asset_ids))
    grant_ids = select(Grant.id).where(Grant.asset_id.in_(asset_ids))
    slugs = select(Asset.slug).where(Asset.id.in_(asset_ids))
    return or_(
        and_(subject_type == "asset", subject_id.in_(asset_ids)),
        and_(subject_type == "access_request", subject_id.in_(request_ids)),
        and_(subject_type == "grant", subject_id.in_(grant_ids)),
        and_(subject_type.not_in(_SUBJECTS_WITH_ASSETS), LOG_TABLE.c.subject_slug.in_(slugs)),
    )
