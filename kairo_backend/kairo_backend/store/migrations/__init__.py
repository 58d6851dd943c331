"""The database's schema versions (Alembic), for SQLite and PostgreSQL alike.

Each revision is idempotent (a table, column or index is made only when missing),
so that a database made before Alembic, by any earlier release's
`CREATE TABLE IF NOT EXISTS` and `ALTER TABLE`, upgrades in place from the first one.
"""
