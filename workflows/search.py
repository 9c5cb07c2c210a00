"""Full-text search over assets with each database's own index: FTS5 on SQLite, tsvector + GIN on PostgreSQL.

Migration 0006 builds the indexes (`asset_fts`, kept in sync by triggers; the generated `search_vector`
column and its GIN index `ix_asset_search`); this module owns how user text becomes an index query, and
which ids match. User text never reaches either query language as syntax: it is cut into words of
letters and digits, and each word is quoted as a prefix, so "churn" finds "churn-events" and `"`, `*`,
`:` or `&` are only characters. A term with other characters
("100%", "raw_e") must also appear literally, checked with an escaped LIKE on the indexed candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, column, func, literal_column, or_, select, table, text
from sqlmodel import Session

from workflows.models import Asset

MAX_TERMS = 8
_WORD = re.compile(r"[^\W_]+")
# ts_rank reads every match it ranks, so a word in every asset would cost a full scan per keystroke; on
# PostgreSQL only the first RANK_WINDOW matches the index yields are ranked. Typing more words narrows it.
RANK_WINDOW = 1000
# On SQLite, matches in these asset_fts columns are candidates before matches anywhere else, as
# PostgreSQL's weight A (name and slug) outranks B and C.
_SQLITE_FIRST_COLUMNS = "{name slug}"


@dataclass(frozen=True)
class SearchQuery:
    """User text split into word prefixes for the index and literal terms checked with LIKE."""

    prefixes: tuple[str, ...]
    literals: tuple[str, ...]


def is_search_index(name: str | None) -> bool:
    """Whether a table or index belongs to the full-text search (the models do not describe them)."""
    return bool(name) and (name.startswith("asset_fts") or name in ("ix_asset_search", "search_vector"))


def split_terms(text: str) -> list[str]:
    """The lowercase, whitespace-separated terms of user text, at most MAX_TERMS of them."""
    # No stored text can hold NUL (PostgreSQL refuses it even as a parameter), so it separates terms.
    return text.replace("\x00", " ").lower().split()[:MAX_TERMS]


def parse_query(text: str) -> SearchQuery | None:
    """Split user text into index prefixes and literal terms; None when there is nothing to look for."""
    terms = split_terms(text)
    if not terms:
        return None
    prefixes: list[str] = []
    literals: list[str] = []
    for term in terms:
        if _WORD.fullmatch(term):
            prefixes.append(term)
            continue
        literals.append(term)
        words = _WORD.findall(term)
        # A term that starts inside a word ("e_c" of "snake_case") has a first word that may be the
        # end of an indexed word, not its start; only the words after a separator are safe prefixes.
        prefixes.extend(words[1:] if _WORD.match(term) else words)
    return SearchQuery(tuple(dict.fromkeys(prefixes)), tuple(dict.fromkeys(literals)))


def matching_ids(*, session: Session, query: SearchQuery, limit: int) -> list[int]:
    """Ids of up to `limit` assets matching every term: by rank on PostgreSQL, name matches first on SQLite."""
    literal = [_contains(term) for term in query.literals]
    if not query.prefixes:
        # Only punctuation to go on ("%", "'"): no index can help, so this scans, newest first.
        statement = select(Asset.id).where(*literal).order_by(Asset.updated_at.desc()).limit(limit)
        return list(session.scalars(statement).all())
    if session.get_bind().dialect.name != "postgresql":
        return _sqlite_matching_ids(session, query, literal, limit)
    # psycopg prepares a statement run five times, and PostgreSQL then plans it once for any words:
    # a plan chosen for rare words reads the whole index for a word in every asset (4 -> 22 ms).
    session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    vector = literal_column("asset.search_vector")
    tsquery = func.to_tsquery(literal_column("'simple'::regconfig"),
                              " & ".join(f"'{word}':*" for word in query.prefixes))
    # ts_rank: higher is better.
    window = select(Asset.id, (-func.ts_rank(vector, tsquery)).label("score")).where(vector.op("@@")(tsquery))
    ranked = window.where(*literal).limit(RANK_WINDOW).subquery()
    statement = select(ranked.c.id).order_by(ranked.c.score, ranked.c.id.desc()).limit(limit)
    return list(session.scalars(statement).all())


# Built once: a table clause made per search was ~50 cyclic objects a search for the collector to find.
_FTS = table("asset_fts", column("rowid"))


def _sqlite_matching_ids(session: Session, query: SearchQuery, literal: list[ColumnElement[bool]],
                         limit: int) -> list[int]:
    # FTS5's bm25 counts every row holding each word before it scores one, and a prefix's rows are
    # gathered twice: 18 ms for a word in all 100,000 assets. Newest first, the index stops after `limit`
    # rows; name and slug matches come first, and the caller's rules order what is found.
    words = " ".join(f'"{word}"*' for word in query.prefixes)
    found: list[int] = []
    for match in (f"{_SQLITE_FIRST_COLUMNS}: ({words})", words):
        statement = (select(Asset.id).join(_FTS, _FTS.c.rowid == Asset.id)
                     .where(literal_column("asset_fts").op("MATCH")(match), *literal)
                     .order_by(_FTS.c.rowid.desc()).limit(limit + len(found)))
        seen = set(found)
        found += [asset_id for asset_id in session.scalars(statement) if asset_id not in seen][:limit - len(found)]
        if len(found) == limit:
            break
    return found


def _contains(term: str) -> ColumnElement[bool]:
    pattern = f"%{escape_like(term)}%"
    return or_(*(func.lower(field).like(pattern, escape="\\")
                 for field in (Asset.name, Asset.slug, Asset.description, Asset.team)))


def escape_like(term: str) -> str:
    """Escape LIKE's own wildcards (and the escape character) so a term matches literally."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
