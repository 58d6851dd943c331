"""Idempotent schema steps for the revisions, and the column types both engines share."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

# Unix seconds and measurements: 8-byte floats on both engines (PostgreSQL's REAL is 4).
Seconds = sa.Double
# A table's own counter: SQLite's rowid alias (AUTOINCREMENT), PostgreSQL's BIGSERIAL.
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSON documents are stored as text on both engines.
Json = sa.Text


def _inspector() -> Any:
    return sa.inspect(op.get_bind())


def create_table(name: str, *columns: Any, **kw: Any) -> None:
    if not _inspector().has_table(name):
        op.create_table(name, *columns, sqlite_autoincrement=any(
            isinstance(c, sa.Column) and c.autoincrement is True for c in columns), **kw)


def create_index(name: str, table: str, columns: list[str], unique: bool = False) -> None:
    if name not in {i["name"] for i in _inspector().get_indexes(table)}:
        op.create_index(name, table, columns, unique=unique)


def add_column(table: str, column: sa.Column) -> None:  # type: ignore[type-arg]
    if column.name not in {c["name"] for c in _inspector().get_columns(table)}:
        op.add_column(table, column)
