"""The store: SQLite (WAL mode) under the data dir, or PostgreSQL by URL; artifacts
live as files in the data dir either way."""

from kairo_backend.store.db import Store

__all__ = ["Store"]
