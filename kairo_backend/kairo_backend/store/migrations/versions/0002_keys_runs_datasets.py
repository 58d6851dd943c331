"""Columns added after the first release: key ids, prefixes and revocation; a run's
artifact error; a dataset's source recording and dropped samples.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from kairo_backend.store.migrations.ops import Json, Seconds, add_column

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_column("runs", sa.Column("artifact_error", sa.Text))  # why an artifact is refused
    add_column("api_keys", sa.Column("id", sa.Text))
    add_column("api_keys", sa.Column("prefix", sa.Text))
    add_column("api_keys", sa.Column("revoked_at", Seconds))
    add_column("datasets", sa.Column("source", Json))  # the recording it was imported from
    add_column("datasets", sa.Column("dropped", Json))  # samples the import dropped, by reason
    # keys made before ids existed get the id security.key_id gives them
    op.execute("UPDATE api_keys SET id='key_'||substr(key_hash, 1, 12) WHERE id IS NULL")


def downgrade() -> None:
    raise NotImplementedError("kairo-backend's schema only moves forward")
