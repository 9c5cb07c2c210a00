"""Creating and emptying the schema: Alembic migrations for real databases, plus a test helper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from workflows import models  # noqa: F401 - registers the tables on SQLModel.metadata
from workflows.search import is_search_index
from workflows.types import StrEnumType, UtcDateTime

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works; every process that migrates this database must use the same one.
_MIGRATION_LOCK_KEY = 0x5E_7A_2E


def alembic_config(*, connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config for our migrations, bound to `connection` (online) or `url` (e.g. `--sql`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser treats % as interpolation; URL-encoded passwords contain it.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision` (the newest by default)."""
    _migrate(engine, lambda config: command.upgrade(config, revision))


def downgrade_database(engine: Engine, revision: str) -> None:
    """Migrate the database down to `revision` ("base" removes every table)."""
    _migrate(engine, lambda config: command.downgrade(config, revision))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision the shipped migrations know."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def autogenerate_options() -> dict[str, Any]:
    """The options env.py and parity tests give Alembic: our metadata and how to render and compare types."""
    return {
        "target_metadata": SQLModel.metadata,
        "render_item": _render_item,
        "compare_type": _compare_type,
        "compare_server_default": True,
        # The full-text index (migration 0006) is database-specific SQL the models cannot describe.
        "include_name": lambda name, type_, parents: not is_search_index(name),
    }


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema."""
    upgrade_database(engine)


def truncate_all(engine: Engine) -> None:
    """Remove every row from every table (tests only)."""
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # decision_log refuses TRUNCATE through a trigger (it is append-only). Test cleanup
            # still has to empty it, so this transaction runs as a replication session, which
            # fires no ordinary triggers. SET LOCAL ends with the transaction, so the pooled
            # connection goes back with the trigger armed. It needs a superuser, as in tests.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


def _render_item(type_: str, obj: Any, autogen_context) -> str | bool:
    # A revision is frozen history. If it imported workflows.types (or sqlmodel), changing or
    # renaming a decorator later would silently rewrite, or break, every old migration; so
    # revisions spell out the plain SQLAlchemy type the database actually holds.
    if type_ != "type":
        return False
    if isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, StrEnumType | AutoString):
        length = obj.impl_instance.length if isinstance(obj, StrEnumType) else obj.length
        return f"sa.String(length={length})" if length else "sa.String()"
    return False


def _compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type) -> bool | None:
    # True means "the column changed"; None lets Alembic decide. The database only ever sees a
    # decorator's impl, so compare that, not the Python-side wrapper.
    if isinstance(metadata_type, UtcDateTime):
        if not isinstance(inspected_type, sa.DateTime):
            return True
        # SQLite keeps no time zone flag to reflect; PostgreSQL must say TIMESTAMP WITH TIME ZONE.
        return context.dialect.name != "sqlite" and not inspected_type.timezone
    if isinstance(metadata_type, TypeDecorator):
        impl = metadata_type.impl_instance
        if isinstance(impl, sa.String):
            return not isinstance(inspected_type, sa.String) or impl.length != inspected_type.length
    return None


def _migrate(engine: Engine, run: Callable[[Config], None]) -> None:
    with _migration_connection(engine) as conn:
        # One transaction for every revision: a failure leaves the database where it was.
        with conn.begin():
            if engine.dialect.name == "postgresql":
                # Several processes (serve, worker, scheduler) may start at once; the second
                # waits here, then finds the database already at head.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            run(alembic_config(connection=conn))
            if engine.dialect.name == "sqlite":
                _check_foreign_keys(conn)


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            yield conn
            return
        # Batch migrations rebuild a SQLite table by copying it and dropping the old one. With
        # foreign keys on, that DROP deletes (cascades to) every referencing row. The pragma is
        # ignored inside a transaction, so it goes straight to the driver before ours begins.
        driver = conn.connection.driver_connection
        driver.execute("PRAGMA foreign_keys=OFF")
        try:
            yield conn
        finally:
            driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Connection) -> None:
    problems = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
    if problems:
        raise RuntimeError(f"migration left rows with broken foreign keys: {problems[:5]}")
