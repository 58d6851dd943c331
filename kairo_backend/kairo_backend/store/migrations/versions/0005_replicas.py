"""Several servers on one database: the replicas alive (a heartbeat each), the replica
that owns each running run, and settings stored once for all (the link secret).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa

from kairo_backend.store.migrations.ops import Seconds, add_column, create_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table("replicas",
                 sa.Column("id", sa.Text, primary_key=True),
                 sa.Column("host", sa.Text, nullable=False),
                 sa.Column("pid", sa.Integer, nullable=False),
                 sa.Column("started_at", Seconds, nullable=False),
                 sa.Column("heartbeat_at", Seconds, nullable=False))
    add_column("runs", sa.Column("owner", sa.Text))  # the replica whose executor trains it
    create_table("settings",
                 sa.Column("key", sa.Text, primary_key=True),
                 sa.Column("value", sa.Text, nullable=False))


def downgrade() -> None:
    raise NotImplementedError("kairo-backend's schema only moves forward")
