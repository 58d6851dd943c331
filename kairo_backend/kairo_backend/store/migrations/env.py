"""Alembic's environment: the connection is kairo_backend.store.migrate's, never a URL here."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
