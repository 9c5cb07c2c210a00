"""Alembic's environment: runs the migrations against the connection `workflows.schema` hands in."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from workflows.db import make_engine
from workflows.schema import autogenerate_options

config = context.config


def run_migrations_offline() -> None:
    """Write the migration SQL for `sqlalchemy.url`'s dialect instead of running it (`--sql`)."""
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need sqlalchemy.url; a dialect will do: 'postgresql://'")
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
        **autogenerate_options(),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        # SQLite can alter almost nothing in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        **autogenerate_options(),
    )
    # When the caller already opened a transaction (workflows.schema does), this is a no-op
    # and the caller's commit or rollback covers every revision at once.
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection in config.attributes, or on a new engine for sqlalchemy.url."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection in config.attributes['connection'] and no sqlalchemy.url set")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run_on(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
