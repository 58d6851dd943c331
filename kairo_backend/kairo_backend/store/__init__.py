"""SQLite store (WAL mode) under the data dir; artifacts live as files beside it."""

from kairo_backend.store.db import Store

__all__ = ["Store"]
