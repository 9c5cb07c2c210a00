"""Full-text search over assets: an FTS5 index on SQLite, a GIN tsvector index on PostgreSQL.

SQLite: `asset_fts` is an external-content FTS5 table (it stores only the index, reading text from
`asset`), kept in sync by three triggers and filled once here with 'rebuild'. A later batch migration
that rebuilds `asset` on SQLite drops these triggers with the old table and must create them again.
PostgreSQL: a stored generated `search_vector` column (name and slug weighted A, team B, description
C) with a GIN index, `ix_asset_search`. Stored, so ranking reads the vector instead of re-parsing text.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "name, slug, team, description"
_PART = "setweight(to_tsvector('simple'::regconfig, regexp_replace({}, '[[:punct:]]+', ' ', 'g')), '{}')"
PG_DOCUMENT = " || ".join(_PART.format(column, weight) for column, weight in
                          (("(name || ' ' || slug)", "A"), ("team", "B"), ("description", "C")))
SQLITE_UPGRADE = (
    (f"CREATE VIRTUAL TABLE asset_fts USING fts5({_COLUMNS}, content='asset', content_rowid='id', "
     "tokenize='unicode61')"),
    (f"CREATE TRIGGER asset_fts_insert AFTER INSERT ON asset BEGIN "
     f"INSERT INTO asset_fts(rowid, {_COLUMNS}) VALUES (new.id, new.name, new.slug, new.team, new.description); END"),
    (f"CREATE TRIGGER asset_fts_delete AFTER DELETE ON asset BEGIN "
     f"INSERT INTO asset_fts(asset_fts, rowid, {_COLUMNS}) "
     "VALUES ('delete', old.id, old.name, old.slug, old.team, old.description); END"),
    (f"CREATE TRIGGER asset_fts_update AFTER UPDATE OF {_COLUMNS} ON asset BEGIN "
     f"INSERT INTO asset_fts(asset_fts, rowid, {_COLUMNS}) "
     "VALUES ('delete', old.id, old.name, old.slug, old.team, old.description); "
     f"INSERT INTO asset_fts(rowid, {_COLUMNS}) VALUES (new.id, new.name, new.slug, new.team, new.description); END"),
    "INSERT INTO asset_fts(asset_fts) VALUES ('rebuild')",
)


def upgrade() -> None:
    """Create the search index for this database."""
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE asset ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({PG_DOCUMENT}) STORED")
        op.execute("CREATE INDEX ix_asset_search ON asset USING gin (search_vector)")
        return
    for statement in SQLITE_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Drop the search index (and on SQLite its triggers)."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_asset_search")
        op.execute("ALTER TABLE asset DROP COLUMN IF EXISTS search_vector")
        return
    for trigger in ("asset_fts_insert", "asset_fts_delete", "asset_fts_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS asset_fts")
