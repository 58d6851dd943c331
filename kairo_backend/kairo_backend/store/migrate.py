"""Schema versions: `kairo-backend db upgrade` / `db current`, and the upgrade every
kairo-backend process that opens the database for the server or the CLI makes first.

Alembic (with SQLAlchemy) is imported only when the database is not at HEAD, so a
training worker opening an up-to-date database pays one SELECT. Concurrent upgrades
(replicas starting together) wait for each other: PostgreSQL's advisory lock, a
file lock beside a SQLite database.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kairo_backend.store.engine import Engine, SQLiteEngine, describe

# The newest revision (kairo_backend/store/migrations/versions).
HEAD = "0005"
MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_lock's key for the upgrade: any constant of this application
_UPGRADE_LOCK = 0x6B6169726F  # "kairo"


class SchemaError(RuntimeError):
    """The database's schema is newer than this kairo-backend knows."""


def current(engine: Engine) -> str | None:
    """The database's revision: None for an empty database, "legacy" for one made
    before Alembic (tables, no alembic_version)."""
    import sqlalchemy as sa

    with _sa_engine(engine).connect() as conn:
        return _current(conn, sa)


def _current(conn: Any, sa: Any) -> str | None:
    tables = set(sa.inspect(conn).get_table_names())
    if "alembic_version" in tables:
        row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
        if row is not None:
            return str(row[0])
    return "legacy" if "workspaces" in tables else None


def at_head(engine: Engine) -> bool:
    """One cheap look, without SQLAlchemy."""
    c = engine.connect()
    try:
        row = c.execute("SELECT version_num FROM alembic_version").fetchone()
        return row is not None and row[0] == HEAD
    except Exception:  # noqa: BLE001 - no such table: not at head
        return False
    finally:
        c.close()


def upgrade(engine: Engine, target: str = HEAD) -> tuple[str | None, str]:
    """Bring the database to `target` (HEAD; an older one for tests of the upgrade
    itself); (the revision before, the target)."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
    with _upgrade_lock(engine), _sa_engine(engine).connect() as conn:
        before = _current(conn, sa)
        if before not in (None, "legacy") and before not in known:
            raise SchemaError(f"the database {describe(_where(engine))} is at schema revision "
                              f"{before}, newer than this kairo-backend knows ({HEAD}): "
                              "run the release that made it, or upgrade kairo-backend")
        if before != target:
            config.attributes["connection"] = conn
            # a database made before Alembic: its revisions run from the first, each
            # making only what is missing
            command.upgrade(config, target)
            conn.commit()
    return before, target


def ensure_schema(engine: Engine) -> None:
    if not at_head(engine):
        upgrade(engine)


def _where(engine: Engine) -> Any:
    return engine.path if isinstance(engine, SQLiteEngine) else getattr(engine, "url", "")


def _sa_engine(engine: Engine) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(engine.sqlalchemy_url(), poolclass=sa.pool.NullPool)


@contextlib.contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[None]:
    if isinstance(engine, SQLiteEngine):
        engine.path.parent.mkdir(parents=True, exist_ok=True)
        with open(engine.path.with_name(engine.path.name + ".upgrade-lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    c = engine.connect()
    try:
        c.execute("SET lock_timeout = 0")  # another replica's upgrade may take a while
        c.execute("SELECT pg_advisory_lock(?)", (_UPGRADE_LOCK,))
        try:
            yield
        finally:
            c.execute("SELECT pg_advisory_unlock(?)", (_UPGRADE_LOCK,))
    finally:
        c.close()
