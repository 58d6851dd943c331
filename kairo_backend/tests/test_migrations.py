"""A database made by an earlier release upgrades in place, with its data: SQLite made by
round 1's own schema text (before Alembic), PostgreSQL at the first revision."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import new_database

# kairo_backend/store/db.py's SCHEMA as released in round 1 (commit 6dcc678)
ROUND1_SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, task TEXT NOT NULL,
    samples INTEGER NOT NULL, features TEXT NOT NULL, path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS datasets_ws ON datasets(workspace_id, created_at);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, task TEXT NOT NULL,
    robot_id TEXT NOT NULL, active_version TEXT, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, next_version INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS models_ws ON models(workspace_id, robot_id, task);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    model_id TEXT NOT NULL, workspace_id TEXT NOT NULL, version TEXT NOT NULL,
    dataset_id TEXT NOT NULL, task TEXT NOT NULL, architecture TEXT NOT NULL,
    config TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
    started_at REAL, completed_at REAL, duration_s REAL, metrics TEXT,
    artifact_size_mb REAL, sha256 TEXT, error TEXT, progress TEXT,
    estimated_duration_s REAL, samples INTEGER NOT NULL DEFAULT 0, pid INTEGER,
    interruptions INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_model ON runs(model_id, seq);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, seq);
CREATE TABLE IF NOT EXISTS run_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, at REAL NOT NULL,
    line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS run_logs_run ON run_logs(run_id, id);
CREATE TABLE IF NOT EXISTS promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT NOT NULL, at REAL NOT NULL,
    from_version TEXT, to_version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS throughput (
    key TEXT PRIMARY KEY, samples_per_s REAL NOT NULL, overhead_s REAL NOT NULL,
    updated_at REAL NOT NULL);
"""
KEY = "kai_live_" + "0123456789abcdef" * 2
KEY_HASH = hashlib.sha256(KEY.encode()).hexdigest()
T = 1_700_000_000.25  # needs more than a 4-byte float's precision
ROWS: list[tuple[str, tuple[Any, ...]]] = [
    ("INSERT INTO workspaces VALUES (?,?,?)", ("ws_old", "legacy", T)),
    ("INSERT INTO api_keys VALUES (?,?,?)", (KEY_HASH, "ws_old", T)),
    ("INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?,?)",
     ("ds_old", "ws_old", "old data", "navigation", 300, json.dumps({"f": 1}), "/nowhere.npz",
      1234, T)),
    ("INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?)",
     ("mdl_old", "ws_old", "old model", "navigation", "rob_old", "v1", T, T, 3)),
    ("INSERT INTO runs (id, model_id, workspace_id, version, dataset_id, task, architecture,"
     " config, status, created_at, started_at, completed_at, metrics, samples)"
     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
     ("run_old1", "mdl_old", "ws_old", "v1", "ds_old", "navigation", "mlp",
      json.dumps({"epochs": 2}), "complete", T, T + 1, T + 2, json.dumps({"accuracy": 0.9}),
      300)),
    ("INSERT INTO runs (id, model_id, workspace_id, version, dataset_id, task, architecture,"
     " config, status, created_at, samples) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
     ("run_old2", "mdl_old", "ws_old", "v2", "ds_old", "navigation", "mlp",
      json.dumps({"epochs": 2}), "queued", T + 3, 300)),
    ("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)", ("run_old1", T, "queued: v1")),
    ("INSERT INTO promotions (model_id, at, from_version, to_version) VALUES (?,?,?,?)",
     ("mdl_old", T + 5, None, "v1")),
    ("INSERT INTO throughput VALUES (?,?,?,?)", ("navigation/mlp", 5000.0, 1.5, T)),
]


def backend(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "kairo_backend", *args], capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout


def check_upgraded(database: Path | str) -> None:
    """Every old row is there, with the columns added since; the store works on."""
    from kairo_backend.store import Store

    store = Store(database, upgrade=False)
    try:
        assert store.workspace_for_key(KEY) == "ws_old"
        (key,) = store.list_keys("legacy")
        assert key["id"] == "key_" + KEY_HASH[:12] and key["revoked_at"] is None, key
        ds = store.get_dataset("ws_old", "ds_old")
        assert ds is not None and ds["features"] == {"f": 1} and ds["samples"] == 300
        assert ds["created_at"] == T and ds["source"] is None and ds["dropped"] == {}
        model = store.get_model("ws_old", "mdl_old")
        assert model is not None and model["active_version"] == "v1", model
        runs = {r["id"]: r for r in store.list_runs("mdl_old")}
        assert runs["run_old1"]["metrics"] == {"accuracy": 0.9}
        assert runs["run_old1"]["artifact_error"] is None and runs["run_old1"]["owner"] is None
        assert runs["run_old2"]["status"] == "queued"
        assert store.run_logs("run_old1") == [{"at": T, "line": "queued: v1"}]
        assert store.promotions("mdl_old")[0]["to_version"] == "v1"
        assert store.throughput("navigation/mlp") == (5000.0, 1.5)
        # the model's next version carries on from the old counter
        submitted = store.submit_run("ws_old", robot_id="rob_old", task="navigation",
                                     name=None, dataset_id="ds_old", architecture="mlp",
                                     config={}, samples=300, estimated_duration_s=1.0,
                                     max_queued=10)
        assert submitted is not None and submitted[0]["version"] == "v3", submitted
        assert submitted[1] == 2  # behind the old queued run
    finally:
        store.close()


def test_a_round_1_sqlite_database_upgrades_in_place(tmp_path: Path) -> None:
    db = tmp_path / "kairo.db"
    with sqlite3.connect(db) as c:
        c.executescript(ROUND1_SCHEMA)
        for sql, values in ROWS:
            c.execute(sql, values)
    before = backend("db", "current", "--data-dir", str(tmp_path))
    assert "schema revision legacy" in before and "run 'kairo-backend db upgrade'" in before
    out = backend("db", "upgrade", "--data-dir", str(tmp_path))
    assert "upgraded from legacy to revision" in out, out
    assert "up to date" in backend("db", "current", "--data-dir", str(tmp_path))
    check_upgraded(db)
    again = backend("db", "upgrade", "--data-dir", str(tmp_path))
    assert "already at revision" in again, again


def test_a_postgresql_database_at_the_first_revision_upgrades_in_place(
        postgres_cluster: str) -> None:
    from kairo_backend.store import migrate
    from kairo_backend.store.engine import make_engine

    url = new_database(postgres_cluster)
    engine = make_engine(url, 5.0)
    assert migrate.upgrade(engine, "0001") == (None, "0001")
    c = engine.connect()
    try:
        for sql, values in ROWS:
            c.execute(sql, values)
    finally:
        c.close()
    assert "schema revision 0001" in backend("db", "current", "--database-url", url)
    out = backend("db", "upgrade", "--database-url", url)
    assert f"upgraded from 0001 to revision {migrate.HEAD}" in out, out
    check_upgraded(url)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database upgraded by a later release is not touched by this one."""
    from kairo_backend.store import migrate
    from kairo_backend.store.engine import make_engine

    engine = make_engine(tmp_path / "kairo.db", 5.0)
    migrate.upgrade(engine)
    with sqlite3.connect(tmp_path / "kairo.db") as c:
        c.execute("UPDATE alembic_version SET version_num='9999'")
    out = subprocess.run([sys.executable, "-m", "kairo_backend", "keys", "list", "--data-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "newer than this kairo-backend knows" in out.stderr, out
    assert "Traceback" not in out.stderr
    with pytest.raises(migrate.SchemaError):
        migrate.upgrade(engine)
