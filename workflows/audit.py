"""The decision log: one append-only table whose entries are chained by SHA-256 hashes."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from multiprocessing import current_process, get_all_start_methods, get_context
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, select

from workflows.db import make_engine, transaction
from workflows.models import DecisionLogEntry

GENESIS_HASH = "0" * 64
# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_KEY = 0x5E_7A_2D


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so the same entry always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_body(entry: DecisionLogEntry | Any) -> dict[str, Any]:
    """The fields of an entry that its hash covers (from an entry, or a row with the same columns)."""
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


def compute_hash(prev_hash: str, entry: DecisionLogEntry | Any) -> str:
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
    """Add one entry to the caller's transaction; it joins the chain (seq and hash) when that commits."""
    entry = DecisionLogEntry(
        # Hash the time as it will read back from the database (UTC), or the chain would not verify.
        at=now.astimezone(UTC),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        subject_slug=subject_slug,
        before=_jsonable(before),
        after=_jsonable(after),
        prev_hash="",
        hash="",
    )
    if session.in_nested_transaction():
        # A savepoint may roll back without the transaction: chain at once, so the entry goes with it.
        _chain(session, [entry])
    else:
        session.info.setdefault(_PENDING, []).append(entry)
    return entry


# Entries of a transaction waiting for its commit, in session.info. The chain is one sequence, so an append
# holds its lock until commit: chaining them last keeps that to the inserts and the commit itself, not
# the whole decision (routing, grant, outbox), which would cap every writer at one decision at a time.
_PENDING = "steward_pending_log_entries"


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        _chain(session, pending)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint within it
        session.info.pop(_PENDING, None)


def _chain(session: Session, entries: list[DecisionLogEntry]) -> None:
    _lock_chain(session)
    head = session.exec(select(DecisionLogEntry.seq, DecisionLogEntry.hash)
                        .order_by(DecisionLogEntry.seq.desc()).limit(1)).first()
    seq, prev_hash = head if head else (0, GENESIS_HASH)
    for entry in entries:
        seq += 1
        entry.seq, entry.prev_hash = seq, prev_hash
        entry.hash = prev_hash = compute_hash(prev_hash, entry)
        session.add(entry)
    session.flush()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain.

    `count` and `head_hash` describe the entries that check out (all of them when `ok`).
    `first_bad_seq` is the first position where the log differs from what was chained: a modified,
    forged or misplaced entry, or the first of a run of deleted ones.
    """

    count: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when every entry links to the one before it."""
        return self.first_bad_seq is None


# What verify reads of an entry: every column, as plain rows (no ORM objects), so a long walk is cheap.
_CHAIN_COLUMNS = (
    DecisionLogEntry.seq, DecisionLogEntry.at, DecisionLogEntry.actor, DecisionLogEntry.action,
    DecisionLogEntry.subject_type, DecisionLogEntry.subject_id, DecisionLogEntry.subject_slug,
    DecisionLogEntry.before, DecisionLogEntry.after, DecisionLogEntry.prev_hash, DecisionLogEntry.hash,
)
Fetch = Callable[[int | None, int], Sequence[Any]]
FindByHash = Callable[[str], tuple[int, str] | None]


def verify_chain(*, session: Session, batch_size: int = 5000) -> ChainReport:
    """Walk the whole chain in order, a batch at a time, and report the first entry that does not check out."""
    return _walk(partial(_fetch_batch, session), partial(_find_by_hash, session), batch_size)


def verify_chain_batched(*, engine: Engine, batch_size: int = 5000) -> ChainReport:
    """verify_chain with one short transaction per batch, so a long walk never holds writers up."""
    quick = _quick_verify(engine, batch_size)
    if quick is not None:
        return quick

    def fetch(after_seq: int | None, limit: int) -> Sequence[Any]:
        with transaction(engine) as session:
            return _fetch_batch(session, after_seq, limit)

    def find(hash_: str) -> tuple[int, str] | None:
        with transaction(engine) as session:
            return _find_by_hash(session, hash_)

    return _walk(fetch, find, batch_size)


# ---- the fast path: prove an intact chain quickly, or hand over to the walk that explains -------------
# A million entries through the walk above take ~40 s, mostly in ORM rows and type conversion. An
# intact chain needs far less: every seq in place, every prev_hash equal to the hash before it, every
# hash right. Those checks read plain driver rows (times and JSON as text, one streaming query per range)
# and build each entry's canonical JSON directly, byte for byte what compute_hash hashes; for a large log
# they run in one process per core over contiguous seq ranges (each entry's hash depends only on its own
# row and stored prev_hash). At the first thing that is not so, or any value it does not render exactly
# as the walk would, the fast path gives up and _walk, unchanged, finds and names it.
_PARALLEL_FROM = 200_000  # entries; below this, starting processes costs more than it saves
_MAX_PROCESSES = 4
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


def _quick_verify(engine: Engine, batch_size: int) -> ChainReport | None:
    with engine.connect() as conn:
        count, low, high = conn.execute(text("SELECT count(*), min(seq), max(seq) FROM decision_log")).one()
    if not count or low != 1 or high != count:
        return None
    parts = _processes(engine, count)
    bounds = [(1 + high * i // parts, high * (i + 1) // parts) for i in range(parts)]
    if parts == 1:
        results = [_check_range(engine, 1, high, batch_size)]
    else:
        url = engine.url.render_as_string(hide_password=False)
        # fork: spawn would re-import the caller's __main__, which a script need not guard. Each child
        # opens an engine of its own and never touches the pooled connections it inherited, and
        # multiprocessing ends a forked child with os._exit, so no inherited connection is closed.
        with ProcessPoolExecutor(parts, mp_context=get_context("fork")) as pool:
            results = list(pool.map(_check_range_at, [url] * parts, [lo for lo, _ in bounds],
                                    [hi for _, hi in bounds], [batch_size] * parts))
    prev = GENESIS_HASH
    for first_prev, last_hash in results:
        if first_prev != prev:
            return None
        prev = last_hash
    return ChainReport(count=high, head_hash=prev)


def _processes(engine: Engine, count: int) -> int:
    in_memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
    # A Celery prefork child is a daemon process, and daemons may not start processes of their own.
    if count < _PARALLEL_FROM or in_memory or current_process().daemon or "fork" not in get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, _MAX_PROCESSES))


def _check_range_at(url: str, low: int, high: int, batch_size: int) -> tuple[str | None, str]:
    """_check_range in a worker process, with an engine of its own."""
    engine = make_engine(url)
    try:
        return _check_range(engine, low, high, batch_size)
    finally:
        engine.dispose()


def _check_range(engine: Engine, low: int, high: int, batch_size: int) -> tuple[str | None, str]:
    """(the stored prev_hash of entry `low`, the hash of entry `high`) when entries low..high are all in
    place, linked to each other and hash right; (None, "") at the first that is not, or at anything this
    path does not render exactly as compute_hash would (the walk then decides, and explains)."""
    first_prev: str | None = None
    prev, expected = "", low
    sha256, string, canonical, render_at = hashlib.sha256, _encode_string, _canonical_json_of_text(), _render_at
    batches = _range_batches(engine, low, high, batch_size)
    try:
        for seq, when, actor, action, subject_type, subject_id, slug, before, after, prev_hash, hash_ in (
                row for batch in batches for row in batch):
            if seq != expected or (seq != low and prev_hash != prev):
                return None, ""
            # compute_hash(prev_hash, entry), spelled out: the body's keys in sorted order, each value
            # encoded as canonical_json encodes it (strings must be str, or encode_basestring refuses).
            body = (f'{prev_hash}{{"action":{string(action)},"actor":{string(actor)},"after":{canonical(after)},'
                    f'"at":{string(render_at(when))},"before":{canonical(before)},"seq":{seq},'
                    f'"subject_id":{subject_id if type(subject_id) is int else _ENCODE(subject_id)},'
                    f'"subject_slug":{string(slug)},"subject_type":{string(subject_type)}}}')
            if sha256(body.encode("utf-8")).hexdigest() != hash_:
                return None, ""
            if seq == low:
                first_prev = prev_hash
            prev, expected = hash_, expected + 1
    except Exception:  # noqa: BLE001 - a value the walk would trip on: let the walk meet it
        return None, ""
    finally:
        batches.close()
    return (first_prev, prev) if expected > high else (None, "")


# encode_basestring is what canonical_json (ensure_ascii=False) applies to every str; it refuses non-str.
_encode_string = json.encoder.encode_basestring
_CHAIN_SELECT = ("SELECT seq, {at}, actor, action, subject_type, subject_id, subject_slug, {before}, {after}, "
                 "prev_hash, hash FROM decision_log WHERE seq >= {low} AND seq <= {high} ORDER BY seq")


def _range_batches(engine: Engine, low: int, high: int, batch_size: int) -> Generator[list[Any], None, None]:
    """Entries low..high in seq order, `batch_size` at a time, as plain driver tuples of _CHAIN_SELECT's
    columns: `at`, `before` and `after` as text. One streaming read (a server-side cursor on PostgreSQL),
    so memory stays flat."""
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            # A named (server-side) cursor: one statement, streamed `batch_size` rows per round trip (a
            # keyset query per batch makes the server plan and seek again each time, and without
            # statistics it sorts the whole rest of the range every time). The time comes as the server's
            # plain ISO text of it in UTC (no to_char), which _render_at turns into entry_body's text.
            raw.driver_connection.execute("SET LOCAL DateStyle = 'ISO, MDY'")  # what psycopg reads, too
            cursor = raw.driver_connection.cursor("steward_verify_range")
            cursor.execute(_CHAIN_SELECT.format(at="(at AT TIME ZONE 'UTC')::text", before="before::text",
                                                after="after::text", low="%(low)s", high="%(high)s"),
                           {"low": low, "high": high})
        else:
            # A plain autocommit read: no BEGIN IMMEDIATE, so it never takes SQLite's write lock.
            cursor = raw.driver_connection.cursor()
            cursor.execute(_CHAIN_SELECT.format(at="at", before="before", after="after", low="?", high="?"),
                           (low, high))
        while batch := cursor.fetchmany(batch_size):
            yield batch
        cursor.close()
    finally:
        raw.rollback()
        raw.close()


def _render_at(when: str) -> str:
    """entry_body's "at" from the time as read in plain text: SQLite's stored "YYYY-MM-DD HH:MM:SS.ffffff",
    or PostgreSQL's ISO text of the time in UTC, "YYYY-MM-DD HH:MM:SS" with up to six digits of fraction,
    trailing zeros dropped. The walk reads either as a datetime (fromisoformat, psycopg) in UTC and renders
    it with isoformat(timespec="microseconds"); for text in exactly that form, with real fields, that is
    the same text with a "T", the fraction padded to six digits and "+00:00". Anything else raises, and
    the walk decides."""
    if _AT.fullmatch(when) is None or not (when[:10] in _VALID_DATES or _valid_date(when[:10])):
        raise ValueError(f"not a time the fast path renders: {when!r}")
    if len(when) == 26:
        return f"{when[:10]}T{when[11:]}+00:00"
    if len(when) == 19:
        return f"{when[:10]}T{when[11:]}.000000+00:00"
    return f"{when[:10]}T{when[11:]:0<15}+00:00"


_AT = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]) (?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?",
                 re.ASCII)
_VALID_DATES: set[str] = set()  # days seen to be real dates ("2025-02-30" is not); a log spans few


def _valid_date(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    if len(_VALID_DATES) < 100_000:
        _VALID_DATES.add(day)
    return True


def _encode_loaded(value: Any) -> str:
    """_ENCODE(value) for a value json.loads returned, with the C encoder _ENCODE builds on every call built
    once: the same arguments, but no check for circular references, which parsed JSON cannot have."""
    return "".join(_C_ENCODE(value, 0)) if _C_ENCODE is not None else _ENCODE(value)


# JSONEncoder.iterencode's own call, with _ENCODE's settings: (markers, default, encoder, indent,
# key_separator, item_separator, sort_keys, skipkeys, allow_nan).
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = None if _make_encoder is None else _make_encoder(None, str, _encode_string, None, ":", ",", True,
                                                             False, True)


def _canonical_json_of_text(limit: int = 4096) -> Callable[[str | None], str]:
    """canonical_json of the value a JSON column holds, from its stored text: json.loads (as SQLAlchemy
    reads the column for the walk), then the canonical encoder. Remembers the short texts it has seen (up
    to `limit`), since many entries store the same `before` or `after`."""
    seen: dict[str | None, str] = {None: "null"}
    scan = json.JSONDecoder().scan_once  # json.loads's own decoder, configured the same

    def canonical(raw: str | None) -> str:
        found = seen.get(raw)
        if found is None:
            # json.loads(raw) is scan(raw, 0) when that reads all of raw (no leading or trailing blanks,
            # no BOM); anything else goes to json.loads itself.
            try:
                value, end = scan(raw, 0)
                if end != len(raw):
                    raise ValueError
            except Exception:  # noqa: BLE001
                value = json.loads(raw)
            found = _encode_loaded(value)
            if len(seen) < limit and len(raw) <= 1024:  # bounded in count and size: memory stays flat
                seen[raw] = found
        return found

    return canonical


def _walk(fetch: Fetch, find: FindByHash, batch_size: int) -> ChainReport:
    # Memory stays flat: one batch of rows, plus the hashes of the last two good entries.
    good: deque[str] = deque([GENESIS_HASH, GENESIS_HASH], maxlen=2)
    expected, after_seq = 1, None
    while True:
        batch = fetch(after_seq, batch_size)
        if not batch:
            return ChainReport(count=expected - 1, head_hash=good[-1])
        for entry in batch:
            bad = _diagnose(entry, expected, good, find)
            if bad is not None:
                return bad
            good.append(entry.hash)
            expected += 1
        after_seq = batch[-1].seq


def _diagnose(entry: Any, expected: int, good: deque[str], find: FindByHash) -> ChainReport | None:
    """None if `entry` belongs at position `expected` after the good entries; else what is wrong."""
    prev = good[-1]

    def bad(seq: int, problem: str, *, head: str = prev) -> ChainReport:
        return ChainReport(count=max(seq - 1, 0), head_hash=head, first_bad_seq=seq, problem=problem)

    seq = entry.seq
    if seq < expected:  # only possible before entry 1: seq 0 or below
        return bad(seq, f"unexpected entry {seq} before entry 1 (it was inserted)")
    if seq > expected:
        gone = f"entry {expected}" if seq == expected + 1 else f"entries {expected}-{seq - 1}"
        where = "starts at" if expected == 1 else f"jumps from entry {expected - 1} to"
        return bad(expected, f"missing: expected entry {expected}, but the log {where} entry {seq} "
                             f"({gone} deleted)")
    intact = compute_hash(entry.prev_hash, entry) == entry.hash
    if entry.prev_hash != prev:
        if expected == 1:
            return bad(1, "the first entry does not start from the genesis hash (it was forged, or earlier "
                          "entries were deleted and the rest renumbered)")
        if entry.prev_hash == GENESIS_HASH:
            return bad(1, f"entries 1-{expected - 1} were inserted before the real first entry, "
                          f"now entry {expected}", head=GENESIS_HASH)
        found = find(entry.prev_hash)
        if found is not None and found[0] < expected - 1:
            first = found[0] + 1
            forged = f"entry {first} was" if first == expected - 1 else f"entries {first}-{expected - 1} were"
            return bad(first, f"inserted: entry {expected} is chained to entry {found[0]}, so {forged} "
                              "added between them (forged)", head=found[1])
        if found is not None:
            return bad(expected, f"out of order: it was chained after the entry now at seq {found[0]} "
                                 "(entries were reordered)")
        if intact:
            # Entry expected-1 checks out on its own but is not what this entry was chained to:
            # it was rewritten and its hash recomputed to hide the edit.
            return bad(expected - 1, f"modified: its hash was recomputed, but entry {expected} was chained "
                                     "to a different previous hash (the original)", head=good[0])
        return bad(expected, f"its previous hash does not match entry {expected - 1} and its contents do not "
                             "match its hash (it was rewritten or renumbered)")
    if not intact:
        return bad(expected, "modified: its contents do not match its hash")
    return None


def _fetch_batch(session: Session, after_seq: int | None, limit: int) -> Sequence[Any]:
    query = select(*_CHAIN_COLUMNS)
    if after_seq is not None:  # the first batch has no lower bound, so forged entries below 1 show up
        query = query.where(DecisionLogEntry.seq > after_seq)
    return session.exec(query.order_by(DecisionLogEntry.seq).limit(limit)).all()


def _find_by_hash(session: Session, hash_: str) -> tuple[int, str] | None:
    # Only asked once the chain is broken, to say how; `hash` is unique, so this is one index lookup.
    row = session.exec(select(DecisionLogEntry.seq, DecisionLogEntry.hash)
                       .where(DecisionLogEntry.hash == hash_)).first()
    return None if row is None else (row[0], row[1])


def head_of_chain(*, session: Session) -> tuple[int, str] | None:
    """The newest entry's seq and hash, or None when the log is empty."""
    row = session.exec(select(DecisionLogEntry.seq, DecisionLogEntry.hash)
                       .order_by(DecisionLogEntry.seq.desc()).limit(1)).first()
    return None if row is None else (row[0], row[1])


def lock_chain(*, session: Session) -> None:
    """Hold the chain's write lock until the transaction ends, so its head cannot move meanwhile."""
    _lock_chain(session)


def _lock_chain(session: Session) -> None:
    # PostgreSQL: serialise appenders so they never read the same head. SQLite transactions
    # already begin IMMEDIATE (see db.py), which serialises writers the same way.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Round-trip through canonical JSON so what is hashed is exactly what the JSON column returns.
    return None if value is None else json.loads(canonical_json(value))
