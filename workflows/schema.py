"""Creating and emptying the schema: Alembic migrations for real databases, plus a test helper."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from workflows import models  # noqa: F401 - registers the tables on SQLModel.metadata


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema."""
    SQLModel.metadata.create_all(engine)


def truncate_all(engine: Engine) -> None:
    """Remove every row from every table (tests only)."""
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
