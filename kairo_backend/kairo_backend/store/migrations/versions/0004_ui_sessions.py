"""The dashboard's sign-in sessions (kairo_backend.ui).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa

from kairo_backend.store.migrations.ops import Seconds, create_index, create_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table("ui_sessions",
                 sa.Column("token_hash", sa.Text, primary_key=True),
                 sa.Column("key_hash", sa.Text, nullable=False),
                 sa.Column("workspace_id", sa.Text, nullable=False),
                 sa.Column("csrf_token", sa.Text, nullable=False),
                 sa.Column("created_at", Seconds, nullable=False),
                 sa.Column("expires_at", Seconds, nullable=False))
    create_index("ui_sessions_expiry", "ui_sessions", ["expires_at"])


def downgrade() -> None:
    raise NotImplementedError("kairo-backend's schema only moves forward")
