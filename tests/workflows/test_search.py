"""Full-text search over assets (workflows/search.py, migration 0006) on SQLite FTS5 and PostgreSQL tsvector."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, text

from tests.factories import edit_asset, make_asset
from workflows import search
from workflows.db import transaction
from workflows.inventory import SEARCH_CANDIDATES, search_assets
from workflows.search import SearchQuery, parse_query


def _search(engine, query: str) -> list[str]:
    with transaction(engine) as session:
        return [asset.slug for asset in search_assets(session=session, text=query)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("churn", SearchQuery(("churn",), ())),
        ("Churn EV", SearchQuery(("churn", "ev"), ())),
        ("churn-ev", SearchQuery(("ev",), ("churn-ev",))),       # "churn" may be the tail of a word
        ('"gold"', SearchQuery(("gold",), ('"gold"',))),         # starts at a separator: a word start
        ("e_c", SearchQuery(("c",), ("e_c",))),
        ("100%", SearchQuery((), ("100%",))),
        ("% %", SearchQuery((), ("%",))),
    ],
)
def test_user_text_becomes_word_prefixes_and_literal_terms(query, expected):
    assert parse_query(query) == expected


def test_a_partial_word_finds_the_asset_as_the_user_types(engine, policy, now):
    make_asset(engine, policy=policy, now=now, name="Churn events")
    make_asset(engine, policy=policy, now=now, name="Revenue", description="monthly recurring")
    for typed in ("c", "chu", "churn", "churn-ev", "churn-events", "ev", "churn ev", "EVENTS"):
        assert _search(engine, typed) == ["churn-events"], typed
    assert _search(engine, "hurn") == []  # a prefix index, not a substring scan


@pytest.mark.parametrize("query", [
    '"', '""', '"churn', "churn*", "*", "NEAR(churn events)", "churn OR events", "churn AND", "NOT churn",
    "-churn", "^churn", "name:churn", "{name slug}:churn", "churn:*", "churn & events | !x", "(churn", "'",
    "churn'", "\\", "\x00", "churn\x00", "churn\x00events", "churn\u00a0events", "🙂 churn", "a" * 500, " ".join(["churn"] * 50),
])
def test_query_syntax_in_user_text_is_plain_text_and_never_raises(engine, policy, now, query):
    make_asset(engine, policy=policy, now=now, name="Churn events")
    found = _search(engine, query)
    assert found in ([], ["churn-events"])


def test_operators_are_searched_as_words(engine, policy, now):
    make_asset(engine, policy=policy, now=now, name="Churn events")
    make_asset(engine, policy=policy, now=now, name="Near or not", description="operators as words")
    assert _search(engine, "churn OR nothing") == []        # every word must match, OR is a word
    assert _search(engine, "near or not") == ["near-or-not"]


def test_the_index_follows_edits(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now, name="Churn events", team="Growth")
    edit_asset(engine, asset, policy=policy, now=now + timedelta(minutes=1), name="Retention signals",
               team="Lifecycle")
    assert _search(engine, "churn") == ["churn-events"]     # the slug keeps the old words
    assert _search(engine, "retention") == ["churn-events"]
    assert _search(engine, "lifecycle") == ["churn-events"]
    assert _search(engine, "growth") == []


def test_the_index_ranks_a_name_match_into_the_candidates_ahead_of_newer_description_matches(engine, policy, now):
    make_asset(engine, policy=policy, now=now, name="Fraud detector")
    for i in range(SEARCH_CANDIDATES + 5):
        make_asset(engine, policy=policy, now=now + timedelta(seconds=i + 1), name=f"Ledger {i}",
                   description="mentions fraud once")
    assert _search(engine, "fraud")[0] == "fraud-detector"


def test_deleted_assets_leave_the_index(engine, policy, now):
    make_asset(engine, policy=policy, now=now, name="Churn events")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM asset"))
    assert _search(engine, "churn") == []


def test_postgresql_answers_from_the_gin_index(pg_engine, policy, now):
    make_asset(pg_engine, policy=policy, now=now, name="Churn events")
    with pg_engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(
            text("EXPLAIN SELECT id FROM asset WHERE search_vector @@ to_tsquery('simple', 'churn:*')")
        ).scalars())
        found = conn.execute(text("SELECT slug FROM asset WHERE search_vector @@ to_tsquery('simple', 'churn:*')"))
        assert found.scalars().all() == ["churn-events"]
    assert "ix_asset_search" in plan


def test_sqlite_answers_from_the_fts5_table(sqlite_engine, policy, now):
    make_asset(sqlite_engine, policy=policy, now=now, name="Churn events")
    with sqlite_engine.connect() as conn:
        rows = conn.execute(text("SELECT rowid FROM asset_fts WHERE asset_fts MATCH '\"churn\"*'")).scalars().all()
    assert len(rows) == 1


def test_only_the_rank_window_of_matches_is_ranked_on_postgresql(pg_engine, policy, now, monkeypatch):
    for i in range(5):
        make_asset(pg_engine, policy=policy, now=now, name=f"Churn events {i}")
    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    assert len(_search(pg_engine, "churn")) == 3
    assert len(_search(pg_engine, "churn 4")) == 1  # another word narrows the matches back into the window


def test_a_word_in_more_assets_than_the_candidates_finds_the_newest(engine, policy, now):
    for i in range(SEARCH_CANDIDATES + 5):
        make_asset(engine, policy=policy, now=now + timedelta(seconds=i), name=f"Ledger {i}",
                   description="mentions fraud once")
    newest = [f"ledger-{i}" for i in range(SEARCH_CANDIDATES + 4, SEARCH_CANDIDATES - 6, -1)]
    assert _search(engine, "fraud") == newest
    assert _search(engine, "fraud ledger") == newest


def test_sqlite_takes_name_matches_first_and_stops_once_it_has_enough(sqlite_engine, policy, now):
    # Named matches fill the candidates, so the second, any-column query never runs.
    for i in range(4):
        make_asset(sqlite_engine, policy=policy, now=now + timedelta(seconds=i), name=f"Fraud rule {i}")
    make_asset(sqlite_engine, policy=policy, now=now + timedelta(seconds=9), name="Ledger", description="fraud")
    matches: list[str] = []
    with transaction(sqlite_engine) as session:
        event.listen(session.connection(), "before_cursor_execute",
                     lambda conn, cursor, statement, params, context, many: matches.extend(
                         p for p in params if isinstance(p, str) and "fraud" in p))
        query = parse_query("fraud")
        assert search.matching_ids(session=session, query=query, limit=4) == [4, 3, 2, 1]
        assert len(matches) == 1 and matches[0].startswith("{name slug}")
        assert search.matching_ids(session=session, query=query, limit=5) == [4, 3, 2, 1, 5]


def test_postgresql_plans_each_search_for_its_own_words_and_only_that_search(pg_engine, policy, now):
    # A generic plan (made once for any words, after psycopg prepares the statement) read the whole
    # index for a word in every asset; each search asks for a plan of its own, for its transaction only.
    make_asset(pg_engine, policy=policy, now=now, name="Churn events")
    with transaction(pg_engine) as session:
        assert search_assets(session=session, text="churn")
        assert session.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    with transaction(pg_engine) as session:
        assert session.execute(text("SHOW plan_cache_mode")).scalar() == "auto"
