"""The schema as first released: workspaces, keys, datasets, models, runs, logs,
promotions, throughput.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa

from kairo_backend.store.migrations.ops import Json, Seconds, Serial, create_index, create_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table("workspaces",
                 sa.Column("id", sa.Text, primary_key=True),
                 sa.Column("name", sa.Text, nullable=False, unique=True),
                 sa.Column("created_at", Seconds, nullable=False))
    create_table("api_keys",
                 sa.Column("key_hash", sa.Text, primary_key=True),
                 sa.Column("workspace_id", sa.Text, sa.ForeignKey("workspaces.id"),
                           nullable=False),
                 sa.Column("created_at", Seconds, nullable=False))
    create_table("datasets",
                 sa.Column("id", sa.Text, primary_key=True),
                 sa.Column("workspace_id", sa.Text, nullable=False),
                 sa.Column("name", sa.Text, nullable=False),
                 sa.Column("task", sa.Text, nullable=False),
                 sa.Column("samples", sa.BigInteger, nullable=False),
                 sa.Column("features", Json, nullable=False),
                 sa.Column("path", sa.Text, nullable=False),
                 sa.Column("size_bytes", sa.BigInteger, nullable=False),
                 sa.Column("created_at", Seconds, nullable=False))
    create_index("datasets_ws", "datasets", ["workspace_id", "created_at"])
    create_table("models",
                 sa.Column("id", sa.Text, primary_key=True),
                 sa.Column("workspace_id", sa.Text, nullable=False),
                 sa.Column("name", sa.Text, nullable=False),
                 sa.Column("task", sa.Text, nullable=False),
                 sa.Column("robot_id", sa.Text, nullable=False),
                 sa.Column("active_version", sa.Text),
                 sa.Column("created_at", Seconds, nullable=False),
                 sa.Column("updated_at", Seconds, nullable=False),
                 sa.Column("next_version", sa.Integer, nullable=False, server_default="1"))
    create_index("models_ws", "models", ["workspace_id", "robot_id", "task"])
    create_table("runs",
                 sa.Column("seq", Serial, primary_key=True, autoincrement=True),
                 sa.Column("id", sa.Text, nullable=False, unique=True),
                 sa.Column("model_id", sa.Text, nullable=False),
                 sa.Column("workspace_id", sa.Text, nullable=False),
                 sa.Column("version", sa.Text, nullable=False),
                 sa.Column("dataset_id", sa.Text, nullable=False),
                 sa.Column("task", sa.Text, nullable=False),
                 sa.Column("architecture", sa.Text, nullable=False),
                 sa.Column("config", Json, nullable=False),
                 sa.Column("status", sa.Text, nullable=False),
                 sa.Column("created_at", Seconds, nullable=False),
                 sa.Column("started_at", Seconds),
                 sa.Column("completed_at", Seconds),
                 sa.Column("duration_s", Seconds),
                 sa.Column("metrics", Json),
                 sa.Column("artifact_size_mb", Seconds),
                 sa.Column("sha256", sa.Text),
                 sa.Column("error", sa.Text),
                 sa.Column("progress", Json),
                 sa.Column("estimated_duration_s", Seconds),
                 sa.Column("samples", sa.BigInteger, nullable=False, server_default="0"),
                 sa.Column("pid", sa.Integer),
                 sa.Column("interruptions", sa.Integer, nullable=False, server_default="0"))
    create_index("runs_model", "runs", ["model_id", "seq"])
    create_index("runs_status", "runs", ["status", "seq"])
    create_table("run_logs",
                 sa.Column("id", Serial, primary_key=True, autoincrement=True),
                 sa.Column("run_id", sa.Text, nullable=False),
                 sa.Column("at", Seconds, nullable=False),
                 sa.Column("line", sa.Text, nullable=False))
    create_index("run_logs_run", "run_logs", ["run_id", "id"])
    create_table("promotions",
                 sa.Column("id", Serial, primary_key=True, autoincrement=True),
                 sa.Column("model_id", sa.Text, nullable=False),
                 sa.Column("at", Seconds, nullable=False),
                 sa.Column("from_version", sa.Text),
                 sa.Column("to_version", sa.Text, nullable=False))
    create_table("throughput",
                 sa.Column("key", sa.Text, primary_key=True),
                 sa.Column("samples_per_s", Seconds, nullable=False),
                 sa.Column("overhead_s", Seconds, nullable=False),
                 sa.Column("updated_at", Seconds, nullable=False))


def downgrade() -> None:
    raise NotImplementedError("kairo-backend's schema only moves forward")
