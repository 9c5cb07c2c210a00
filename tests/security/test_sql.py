"""SQL metacharacters are plain text: in search (Slack and the service), the lineage pickers, slugs and the
exports, on SQLite and PostgreSQL.

Every query is parameterised, and LIKE patterns escape their own wildcards, so `%` finds a percent sign,
`_` an underscore and `\\` a backslash, and an injection attempt finds the one asset that is named after
it, while every table stays where it was.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect as sql_inspect

from steward.cli import main
from tests.factories import make_asset, row_counts
from workflows import inventory
from workflows.db import transaction
from workflows.enums import AssetKind
from workflows.errors import InvalidInput, NotFound

INJECTION = "'; DROP TABLE asset; --"
NAMES = {
    "percent": "100% synthetic",
    "underscore": "snake_case features",
    "backslash": "C:\\data\\raw",
    "quote": "O'Brien's loans",
    "double": 'The "gold" set',
    "injection": INJECTION,
    "plain": "Plain churn",
}
SEARCHES = [
    ("%", {"percent"}),
    ("_", {"underscore"}),
    ("\\", {"backslash"}),
    ("'", {"quote", "injection"}),
    ('"gold"', {"double"}),
    (INJECTION, {"injection"}),
    ("' OR '1'='1", set()),
    ("%%", set()),
    ("e_c", {"underscore"}),
    ("sn_ke", set()),  # a wildcard "_" would match "snake"
]


@pytest.fixture
def named(engine, policy, now) -> dict[str, int]:
    """One dataset per name above, registered through the service; their ids by key."""
    return {key: make_asset(engine, policy=policy, now=now, name=name, description=f"about {name}").id
            for key, name in NAMES.items()}


def _keys(named: dict[str, int], assets) -> set[str]:
    ids = {asset.id for asset in assets}
    return {key for key, asset_id in named.items() if asset_id in ids}


@pytest.mark.parametrize(("text", "expected"), SEARCHES, ids=[repr(t) for t, _ in SEARCHES])
def test_search_and_the_pickers_match_metacharacters_literally(engine, named, figures, text, expected):
    before = row_counts(engine)
    with transaction(engine) as session:
        found = inventory.search_assets(session=session, text=text)
        picked = inventory.pick_assets(session=session, text=text, kinds=frozenset({AssetKind.DATASET}))
    assert _keys(named, found) == expected
    assert _keys(named, picked) == expected
    assert row_counts(engine) == before and "asset" in sql_inspect(engine).get_table_names()
    figures["cases"] += 1


def test_a_slug_is_derived_as_plain_words_and_an_explicit_one_with_metacharacters_is_refused(engine, named,
                                                                                             policy, now):
    with transaction(engine) as session:
        assert inventory.find_asset(session=session, slug="drop-table-asset").name == INJECTION
        with pytest.raises(NotFound):
            inventory.find_asset(session=session, slug=INJECTION)
        with pytest.raises(NotFound):
            inventory.find_asset(session=session, slug="' or '1'='1")
    with pytest.raises(InvalidInput, match="lowercase letters"):
        make_asset(engine, policy=policy, now=now, name="Another", slug="x'; drop table asset; --")


def test_slack_search_answers_with_the_literal_match(harness, named):
    harness.command("search %")
    reply = harness.last_reply_text()
    assert "100% synthetic" in reply and "snake_case" not in reply and "Plain churn" not in reply
    harness.command(f"search {INJECTION}")
    assert "*1* best match" in harness.last_reply_text()
    assert "asset" in sql_inspect(harness.ctx.engine).get_table_names()


def _export(engine, monkeypatch, *args: str):
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return CliRunner().invoke(main, ["export", *args], catch_exceptions=True)


def test_exports_carry_the_names_verbatim_and_filter_by_exact_slug(engine, named, cli_home, monkeypatch):
    result = _export(engine, monkeypatch, "inventory", "--format", "json")
    assert result.exit_code == 0, result.stderr
    exported = {item["name"] for item in json.loads(result.stdout)}
    assert set(NAMES.values()) <= exported

    refused = _export(engine, monkeypatch, "decisions", "--asset", "' OR '1'='1")
    assert refused.exit_code == 1 and "No asset is called" in refused.stderr and refused.stdout == ""

    only = _export(engine, monkeypatch, "decisions", "--asset", "drop-table-asset")
    entries = [json.loads(line) for line in only.stdout.splitlines()]
    assert only.exit_code == 0 and entries and {e["subject_slug"] for e in entries} == {"drop-table-asset"}
