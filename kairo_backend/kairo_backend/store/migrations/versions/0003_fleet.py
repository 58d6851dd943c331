"""The fleet: robots as they last reported, and deployments of model versions.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa

from kairo_backend.store.migrations.ops import Json, Seconds, Serial, create_index, create_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table("robots",
                 sa.Column("workspace_id", sa.Text, nullable=False, primary_key=True),
                 sa.Column("id", sa.Text, nullable=False, primary_key=True),
                 sa.Column("node", sa.Text, nullable=False),
                 sa.Column("task", sa.Text),
                 sa.Column("model_id", sa.Text, nullable=False),
                 sa.Column("serving", Json),
                 sa.Column("health", Json),
                 sa.Column("shadow", Json),
                 sa.Column("refused", Json, nullable=False),
                 sa.Column("period_s", Seconds, nullable=False),
                 sa.Column("first_seen", Seconds, nullable=False),
                 sa.Column("last_seen", Seconds, nullable=False))
    create_table("deployments",
                 sa.Column("seq", Serial, primary_key=True, autoincrement=True),
                 sa.Column("id", sa.Text, nullable=False, unique=True),
                 sa.Column("workspace_id", sa.Text, nullable=False),
                 sa.Column("model_id", sa.Text, nullable=False),
                 sa.Column("version", sa.Text, nullable=False),
                 sa.Column("previous_version", sa.Text),
                 sa.Column("mode", sa.Text, nullable=False),
                 sa.Column("robots", Json, nullable=False),
                 sa.Column("guard", Json, nullable=False),
                 sa.Column("state", sa.Text, nullable=False),
                 sa.Column("reason", sa.Text),
                 sa.Column("progress", Json, nullable=False),
                 sa.Column("observing_since", Seconds),
                 sa.Column("created_at", Seconds, nullable=False),
                 sa.Column("updated_at", Seconds, nullable=False))
    create_index("deployments_model", "deployments", ["model_id", "seq"])
    create_index("deployments_state", "deployments", ["state"])


def downgrade() -> None:
    raise NotImplementedError("kairo-backend's schema only moves forward")
