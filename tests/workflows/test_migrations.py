"""The Alembic migrations build exactly the models' schema, undo it, and guard the decision log."""

from __future__ import annotations

import fnmatch
import io
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from workflows import audit
from workflows.db import make_engine, transaction
from workflows.schema import (
    MIGRATIONS_DIR,
    alembic_config,
    autogenerate_options,
    create_schema,
    current_revision,
    downgrade_database,
    truncate_all,
    upgrade_database,
)
from workflows.search import is_search_index

MODEL_TABLES = {"asset", "edge", "classification", "decision_log", "outboxmessage", "leaderlock",
                "access_request", "approval_step", "decision", "access_grant", "provisioning_job",
                "audit_anchor", "review_nudge", "asset_review", "recert_schedule", "recert_campaign",
                "recert_item", "orphaned_asset", "queued_work"}
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
INSERT_ENTRY = text(
    "INSERT INTO decision_log (seq, at, actor, action, subject_type, subject_slug, prev_hash, hash) "
    "VALUES (:seq, :at, 'U0OWNER1', 'asset.registered', 'asset', '', :prev, :hash)"
)


@pytest.fixture
def fresh_sqlite(tmp_path) -> Iterator[Engine]:
    """An empty SQLite file that no migration has touched."""
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_postgres(fresh_postgres_url: str) -> Iterator[Engine]:
    """An empty PostgreSQL database of its own, so the shared session database stays at head."""
    engine = make_engine(fresh_postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request) -> Engine:
    """An empty database, once per backend."""
    return request.getfixturevalue(f"fresh_{'postgres' if request.param == 'postgresql' else 'sqlite'}")


def schema_differences(engine: Engine) -> list:
    """What autogenerate would change to make the database match SQLModel.metadata."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=autogenerate_options())
        return compare_metadata(context, SQLModel.metadata)


def table_names(engine: Engine) -> set[str]:
    """Every table in the database except Alembic's own bookkeeping and the full-text index."""
    return {name for name in inspect(engine).get_table_names() if name != "alembic_version" and not is_search_index(name)}


def test_there_is_exactly_one_head():
    assert HEAD is not None
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


def test_a_fresh_database_migrates_to_exactly_the_models(fresh_engine):
    assert current_revision(fresh_engine) is None
    assert table_names(fresh_engine) == set()

    upgrade_database(fresh_engine)

    assert current_revision(fresh_engine) == HEAD
    assert table_names(fresh_engine) == MODEL_TABLES == {t.name for t in SQLModel.metadata.sorted_tables}
    assert schema_differences(fresh_engine) == []
    # The same check through env.py, as `alembic check` would run it.
    with fresh_engine.begin() as conn:
        command.check(alembic_config(connection=conn))


def test_upgrading_a_database_at_head_changes_nothing(fresh_engine):
    create_schema(fresh_engine)
    create_schema(fresh_engine)
    assert current_revision(fresh_engine) == HEAD
    assert schema_differences(fresh_engine) == []


def test_downgrade_to_base_leaves_no_tables_and_upgrades_again(fresh_engine):
    upgrade_database(fresh_engine)

    downgrade_database(fresh_engine, "base")

    assert current_revision(fresh_engine) is None
    assert table_names(fresh_engine) == set()
    if fresh_engine.dialect.name == "postgresql":
        with fresh_engine.connect() as conn:
            functions = conn.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'decision_log_append_only'")
            ).scalar_one()
        assert functions == 0
    upgrade_database(fresh_engine)
    assert schema_differences(fresh_engine) == []


def test_0007_schedules_every_asset_with_a_live_grant_and_brings_requested_ones_forward(fresh_engine):
    upgrade_database(fresh_engine, "0006")
    at, far = "2026-01-05 09:00:00", "2027-06-01 09:00:00"
    with fresh_engine.begin() as conn:
        for asset_id, status in ((1, "active"), (2, "active"), (3, "expired"), (4, "provisioning")):
            conn.execute(text("INSERT INTO asset (id, kind, name, slug, owner_id, team, location_uri, description, "
                              "version, license, sensitivity, contains_personal_data, status, details, created_by, "
                              "created_at, updated_at) VALUES (:id, 'model', :name, :name, 'U0OWNER1', '', '', '', "
                              "'', '', 'internal', false, 'active', '{}', 'U0OWNER1', :at, :at)"),
                         {"id": asset_id, "name": f"a{asset_id}", "at": at})
            conn.execute(text("INSERT INTO access_request (id, asset_id, requester_id, level, duration_hours, "
                              "justification, emergency, status, created_at, resolved_by, resolution_note, reminders_sent) "
                              "VALUES (:id, :id, 'U0OTHER1', 'read', 24, '', false, 'approved', :at, '', '', 0)"), {"id": asset_id, "at": at})
            conn.execute(text("INSERT INTO access_grant (id, request_id, asset_id, grantee_id, level, emergency, "
                              "status, granted_at, expires_at, ended_by, end_reason) VALUES (:id, :id, :id, "
                              "'U0OTHER1', 'read', false, :status, :at, :far, '', '')"),
                         {"id": asset_id, "status": status, "at": at, "far": far})
        conn.execute(text("INSERT INTO recert_schedule (asset_id, next_due_at, honoured_seq) VALUES (2, :far, 0)"),
                     {"far": far})
        conn.execute(text("INSERT INTO decision_log (seq, at, actor, action, subject_type, subject_id, subject_slug, "
                          "prev_hash, hash) VALUES (1, :at, 'U0OWNER1', 'grant.recertification_requested', "
                          "'grant', 2, 'a2', '', 'h1')"), {"at": at})

    upgrade_database(fresh_engine)

    with fresh_engine.connect() as conn:
        rows = conn.execute(text("SELECT asset_id, next_due_at, provisional FROM recert_schedule "
                                 "ORDER BY asset_id")).all()
    assert [(asset_id, bool(provisional)) for asset_id, _, provisional in rows] == [(1, True), (2, False), (4, True)]
    assert all(str(due)[:4] == "2026" for _, due, _ in rows)  # due now: the first campaign check settles them


def test_the_parity_check_notices_a_column_type_that_drifted(fresh_postgres):
    upgrade_database(fresh_postgres)
    with fresh_postgres.connect() as conn, conn.begin() as trans:
        conn.execute(text("ALTER TABLE asset ALTER COLUMN created_at TYPE timestamp without time zone"))
        conn.execute(text("ALTER TABLE asset ALTER COLUMN kind TYPE varchar(16)"))
        context = MigrationContext.configure(conn, opts=autogenerate_options())
        diffs = compare_metadata(context, SQLModel.metadata)
        trans.rollback()
    changed = {change[3] for group in diffs for change in group if change[0] == "modify_type"}
    assert changed == {"created_at", "kind"}


def test_the_session_databases_are_at_head(engine):
    assert current_revision(engine) == HEAD


def test_postgresql_refuses_to_update_delete_or_truncate_the_decision_log(fresh_postgres, now):
    upgrade_database(fresh_postgres)
    with fresh_postgres.begin() as conn:
        conn.execute(INSERT_ENTRY, {"seq": 1, "at": now, "prev": "0" * 64, "hash": "a" * 64})
        conn.execute(INSERT_ENTRY, {"seq": 2, "at": now, "prev": "a" * 64, "hash": "b" * 64})

    refused = [
        "UPDATE decision_log SET actor = 'U0MALLORY' WHERE seq = 1",
        "DELETE FROM decision_log WHERE seq = 2",
        "UPDATE decision_log SET actor = 'U0MALLORY' WHERE seq = 999",  # even when no row matches
        "TRUNCATE decision_log",
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="decision_log is append-only"), fresh_postgres.begin() as conn:
            conn.execute(text(statement))

    with fresh_postgres.connect() as conn:
        rows = conn.execute(text("SELECT seq, actor FROM decision_log ORDER BY seq")).all()
    assert rows == [(1, "U0OWNER1"), (2, "U0OWNER1")]


def test_truncate_all_still_empties_the_decision_log_and_leaves_the_guard_armed(pg_engine, now):
    with transaction(pg_engine) as session:
        audit.append_entry(session=session, actor="U0OWNER1", action="asset.registered",
                           subject_type="asset", subject_id=None, now=now)

    truncate_all(pg_engine)

    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM decision_log")).scalar_one() == 0
        # SET LOCAL ended with truncate_all's transaction: this pooled connection is guarded again.
        assert conn.execute(text("SHOW session_replication_role")).scalar_one() == "origin"
        with pytest.raises(DBAPIError, match="decision_log is append-only"):
            conn.execute(text("TRUNCATE decision_log"))


@pytest.mark.parametrize(("url", "has_trigger"), [("postgresql://", True), ("sqlite://", False)])
def test_offline_mode_writes_the_sql_without_a_database(url, has_trigger):
    config = alembic_config(url=url)
    config.output_buffer = io.StringIO()

    command.upgrade(config, "head", sql=True)

    script = config.output_buffer.getvalue()
    for table in MODEL_TABLES:
        assert f"CREATE TABLE {table} (" in script
    assert ("decision_log is append-only" in script) is has_trigger


def test_the_package_data_ships_every_migration_file():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["workflows"]
    package_dir = MIGRATIONS_DIR.parent
    files = [p for p in MIGRATIONS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    unshipped = [str(p.relative_to(package_dir)) for p in files
                 if not any(fnmatch.fnmatch(str(p.relative_to(package_dir)), pat) for pat in patterns)]
    assert unshipped == []
