"""The two database engines behind the Store: SQLite (a file, the default) and PostgreSQL.

The Store and the modules beside it write one SQL text for both: `?` placeholders,
`INSERT ... ON CONFLICT`, `CAST(? AS TEXT)` where a parameter's type must be known.
What differs lives here: how a connection is made (one per thread), how a write
transaction takes its locks (SQLite's one write lock up front, `BEGIN IMMEDIATE`;
PostgreSQL's row locks, taken by `FOR UPDATE` where the Store reads to write), how
"has anything changed" is asked, and which errors mean "busy, try again".

PostgreSQL statements are bound on the client (psycopg's ClientCursor), as SQLite's
are typed at run time: `? IS NULL` and `? - started_at` need no casts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

# Rows as both engines give them: by column name, by index, and dict(row).
Row = Any


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Row: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...

    def close(self) -> None: ...


def is_postgres_url(database: str | Path) -> bool:
    return isinstance(database, str) and database.split(":", 1)[0] in (
        "postgresql", "postgres", "postgresql+psycopg")


def describe(database: str | Path) -> str:
    """The database for messages and logs: a file's path, or a URL without its password."""
    if not is_postgres_url(database):
        return str(database)
    parts = urlsplit(str(database))
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}{host}{port}{parts.path}"


class Engine:
    name = ""
    # appended to a SELECT that reads rows the transaction then changes
    for_update = ""
    # appended to the queue's claim: rows another transaction holds are passed over
    skip_locked = ""

    def connect(self) -> Connection:
        raise NotImplementedError

    def prepare(self, c: Connection) -> None:
        """Once per Store, before anything else."""

    def begin(self, c: Connection) -> None:
        raise NotImplementedError

    def change_stamp(self, c: Connection) -> object:
        """A value that differs once any connection (any process) has committed a write."""
        raise NotImplementedError

    def sqlalchemy_url(self) -> str:
        raise NotImplementedError


class SQLiteEngine(Engine):
    name = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s

    def connect(self) -> Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        c = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                            check_same_thread=False)
        c.row_factory = sqlite3.Row
        c.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA foreign_keys=ON")
        return c  # type: ignore[return-value]

    def prepare(self, c: Connection) -> None:
        # readers never wait on a training process that writes progress
        c.execute("PRAGMA journal_mode=WAL")

    def begin(self, c: Connection) -> None:
        c.execute("BEGIN IMMEDIATE")  # the write lock up front: no deadlock on upgrade

    def change_stamp(self, c: Connection) -> object:
        return int(c.execute("PRAGMA data_version").fetchone()[0])

    def sqlalchemy_url(self) -> str:
        return f"sqlite:///{self.path}"


class _PgRow(dict):  # type: ignore[type-arg]
    """A row by column name (a dict) and by index, as sqlite3.Row is."""

    __slots__ = ("values_",)
    values_: Sequence[Any]

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, int):
            return self.values_[k]
        return dict.__getitem__(self, k)


def _pg_row_factory(cursor: Any) -> Any:
    names = [d.name for d in cursor.description] if cursor.description else []

    def make(values: Sequence[Any]) -> _PgRow:
        row = _PgRow(zip(names, values, strict=True))
        row.values_ = values
        return row
    return make


@lru_cache(maxsize=2048)
def _pg_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal % doubled). The Store's SQL has no
    `?` inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgConnection:
    """A psycopg connection (autocommit: a statement alone commits, as SQLite's
    isolation_level=None) that takes the Store's SQL text."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.raw.cursor()
        cur.execute(_pg_sql(sql), tuple(params) if params else None)
        return cur

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(_pg_sql(sql), [tuple(p) for p in params])
        return cur

    def close(self) -> None:
        self.raw.close()

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)


class PostgresEngine(Engine):
    name = "postgresql"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, busy_timeout_s: float) -> None:
        self.url = "postgresql://" + url.split("://", 1)[1]
        self.busy_timeout_s = busy_timeout_s

    def connect(self) -> Connection:
        import psycopg  # only a PostgreSQL deployment needs it (the backend's scale extra)

        ms = int(self.busy_timeout_s * 1000)
        conn = psycopg.connect(self.url, autocommit=True, cursor_factory=psycopg.ClientCursor,
                               row_factory=_pg_row_factory, connect_timeout=10,
                               application_name="kairo-backend",
                               # a held row lock answers 503 "busy", as SQLite's busy timeout
                               options=f"-c lock_timeout={ms} -c idle_in_transaction_session"
                                       f"_timeout={max(ms * 20, 60000)}")
        return _PgConnection(conn)  # type: ignore[return-value]

    def begin(self, c: Connection) -> None:
        c.execute("BEGIN")  # READ COMMITTED; the Store locks the rows it reads to write

    def change_stamp(self, c: Connection) -> object:
        # the transaction ids committed or running: unchanged while nothing was written
        return str(c.execute("SELECT pg_current_snapshot()::text").fetchone()[0])

    def sqlalchemy_url(self) -> str:
        return "postgresql+psycopg://" + self.url.split("://", 1)[1]


def make_engine(database: str | Path, busy_timeout_s: float) -> Engine:
    """A `postgresql://` URL, a `sqlite:///PATH` URL, or a SQLite file's path."""
    if is_postgres_url(database):
        return PostgresEngine(str(database), busy_timeout_s)
    text = str(database)
    if text.startswith("sqlite:///"):
        return SQLiteEngine(Path(text[len("sqlite:///"):]), busy_timeout_s)
    if "://" in text:
        raise ValueError(f"database URL {describe(text)!r}: only postgresql://USER@HOST:PORT/"
                         "DB and sqlite:///PATH are supported")
    return SQLiteEngine(Path(text), busy_timeout_s)


def disk_full_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.errors.DiskFull)


def database_error_types() -> tuple[type[Exception], ...]:
    """PostgreSQL's error classes when its driver is installed (for the app's handlers)."""
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.Error,)


def busy_error(exc: BaseException) -> bool:
    """Whether a PostgreSQL error means "try again" (a lock wait timed out, a lost
    connection, a serialization failure); SQLite's are told by kairo_backend.errors."""
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.SerializationFailure
                      | psycopg.errors.DeadlockDetected | psycopg.OperationalError)
