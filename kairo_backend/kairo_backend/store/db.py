"""The store: workspaces, keys, datasets, models, runs, logs, promotions, replicas.

On SQLite (a file in the data dir, the default) or PostgreSQL (a URL): one SQL
text for both, the differences in kairo_backend.store.engine; the schema's
versions in kairo_backend.store.migrations (Alembic). One connection per thread.
Timestamps are unix seconds here; the schemas turn them into ISO 8601.

Several servers ("replicas") may share one PostgreSQL database: each registers
itself (kairo_backend.store.replicas keeps its heartbeat), a run claimed from the
queue records the replica that trains it, and `running_runs` gives a replica only
the runs it must look after, its own and those of replicas that are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kairo_backend.core import security
from kairo_backend.core.util import new_id, now
from kairo_backend.store import migrate
from kairo_backend.store.engine import Connection, PostgresEngine, Row, SQLiteEngine, make_engine
from kairo_backend.store.rows import DatasetRow, KeyRow, ModelRow, PromotionRow, RunLogRow, RunOutcome, RunRow, as_row

# How long the server waits for another writer before answering 503: short,
# so that a held lock never ties up the request threads.
SERVER_BUSY_TIMEOUT_S = 1.5
# Training processes and the CLI wait longer: nobody waits on their answer.
BACKGROUND_BUSY_TIMEOUT_S = 30.0
# An API key looked up once is trusted this long; a revoked key stops working
# within it on a running server.
KEY_CACHE_S = 0.5

ACTIVE = ("queued", "running")
FINISHED = ("complete", "failed", "cancelled")
# A replica whose heartbeat is older than this is gone: its running runs are
# re-queued by the others (at once when it ran on this host and its process is gone).
REPLICA_LEASE_S = 20.0
HOST = socket.gethostname()


def _loads(v: str | None) -> Any:
    return json.loads(v) if v else None


def _attempt_fence(attempt: int | None) -> tuple[str, tuple[int, ...]]:
    """The SQL condition (and its parameter) that a run is still the given attempt at
    training it: `interruptions` counts its re-queues, so each claim has its own value."""
    return ("", ()) if attempt is None else (" AND interruptions=?", (attempt,))


def _run_dict(row: Row, unrecorded: dict[str, RunOutcome] | None = None) -> RunRow:
    d = as_row(RunRow, row)
    shown = unrecorded.get(d["id"]) if unrecorded else None
    if shown is not None and d["status"] in ACTIVE:
        d.update(shown)
    d["config"] = _loads(row["config"])
    d["metrics"] = _loads(row["metrics"])
    d["progress"] = _loads(row["progress"])
    return d


def _dataset_row(row: Row) -> DatasetRow:
    d = as_row(DatasetRow, row)
    d["features"] = json.loads(row["features"])
    d["source"] = json.loads(row["source"]) if row["source"] else None
    d["dropped"] = json.loads(row["dropped"]) if row["dropped"] else {}
    return d


class Store:
    def __init__(self, database: Path | str, busy_timeout_s: float = SERVER_BUSY_TIMEOUT_S,
                 *, upgrade: bool = True) -> None:
        """`database`: a SQLite file's path, or a `postgresql://` URL. `upgrade`: bring
        the schema to the newest revision first (kairo_backend.store.migrate)."""
        self.engine = make_engine(database, busy_timeout_s)
        self.path = self.engine.path if isinstance(self.engine, SQLiteEngine) else None
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._key_cache: dict[str, tuple[str, float]] = {}  # key hash -> (workspace, valid until)
        self._writes = 0  # writes by this process (its own commits leave data_version alone)
        # Outcomes of runs this process could not write yet (a full disk):
        # run id -> the columns to show until the write succeeds.
        self.unrecorded: dict[str, RunOutcome] = {}
        # The replica this process serves as (register_replica), None for a worker or the CLI.
        self.replica_id: str | None = None
        self.engine.prepare(self.conn)
        if upgrade:
            migrate.ensure_schema(self.engine)

    @property
    def postgres(self) -> bool:
        return isinstance(self.engine, PostgresEngine)

    @property
    def conn(self) -> Connection:
        c: Connection | None = getattr(self._local, "conn", None)
        if c is None or getattr(c, "broken", False):  # a PostgreSQL connection lost
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()
            c = self.engine.connect()
            self._local.conn = c
        return c

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction: SQLite's write lock up front; on PostgreSQL the rows
        read to be changed are locked by the statement (`FOR UPDATE`)."""
        c = self.conn
        self.engine.begin(c)
        try:
            yield c
        except BaseException:
            try:
                c.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - a lost connection: a new one next time
                self._local.conn = None
            raise
        c.execute("COMMIT")
        self._writes += 1

    def change_stamp(self) -> tuple[object, int]:
        """Changes when anything commits: another connection or process (SQLite's
        data_version, PostgreSQL's snapshot) or this process."""
        return self.engine.change_stamp(self.conn), self._writes

    def cached(self, key: str, build: Callable[[], bytes]) -> bytes:
        """`build()`'s bytes, reused until the database changes (per thread)."""
        cache: dict[str, tuple[tuple[object, int], bytes]] | None = getattr(
            self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        stamp = self.change_stamp()
        hit = cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        body = build()
        if len(cache) > 1000:
            cache.clear()
        cache[key] = (stamp, body)
        return body

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # workspaces and keys -------------------------------------------------
    def ensure_workspace(self, name: str) -> str:
        row = self.conn.execute("SELECT id FROM workspaces WHERE name=?", (name,)).fetchone()
        if row:
            return str(row["id"])
        with self.tx() as c:  # made once, whichever replica asks first
            c.execute("INSERT INTO workspaces (id, name, created_at) VALUES (?,?,?)"
                      " ON CONFLICT (name) DO NOTHING", (new_id("ws_"), name, now()))
            return str(c.execute("SELECT id FROM workspaces WHERE name=?",
                                 (name,)).fetchone()["id"])

    def create_key(self, workspace: str) -> str:
        """A new key for `workspace` (its id: security.key_id). Only its hash is stored."""
        ws = self.ensure_workspace(workspace)
        key = security.new_api_key()
        with self.tx() as c:
            c.execute("INSERT INTO api_keys (key_hash, workspace_id, created_at, id, prefix)"
                      " VALUES (?,?,?,?,?)", (security.hash_key(key), ws, now(),
                                              security.key_id(key), security.key_prefix(key)))
        return key

    def list_keys(self, workspace: str | None = None) -> list[KeyRow]:
        """Every key (never its secret): id, prefix, workspace, created_at, revoked_at."""
        rows = self.conn.execute(
            "SELECT k.id, k.prefix, w.name AS workspace, k.created_at, k.revoked_at"
            " FROM api_keys k JOIN workspaces w ON w.id=k.workspace_id"
            " WHERE CAST(? AS TEXT) IS NULL OR w.name=? ORDER BY k.created_at, k.id",
            (workspace, workspace)).fetchall()
        return [as_row(KeyRow, r) for r in rows]

    def revoke_key(self, ref: str) -> KeyRow:
        """Revoke the one key whose id or prefix is `ref` (or the key itself); that key.

        Raises LookupError when no key or more than one key matches.
        """
        ref = ref.strip()
        with self.tx() as c:
            rows = c.execute(
                "SELECT key_hash, id, prefix, revoked_at FROM api_keys"
                " WHERE id=? OR key_hash=? OR (prefix IS NOT NULL AND length(?) >= ?"
                " AND substr(prefix, 1, length(?))=?)",
                (ref, security.hash_key(ref), ref, len(security.KEY_PREFIX) + 2, ref, ref)
            ).fetchall()
            if not rows:
                raise LookupError(f"no API key has the id or prefix {ref!r}; "
                                  "see 'kairo-backend keys list'")
            if len(rows) > 1:
                ids = ", ".join(sorted(r["id"] for r in rows))
                raise LookupError(f"{ref!r} matches {len(rows)} keys ({ids}); "
                                  "give the key id instead")
            row = rows[0]
            if row["revoked_at"] is None:
                c.execute("UPDATE api_keys SET revoked_at=? WHERE key_hash=?",
                          (now(), row["key_hash"]))
        self._key_cache.pop(row["key_hash"], None)
        return next(k for k in self.list_keys() if k["id"] == row["id"])

    def workspace_for_key(self, key: str) -> str | None:
        """The workspace of a valid, unrevoked key (looked up again after KEY_CACHE_S)."""
        h = security.hash_key(key)
        t = time.monotonic()
        hit = self._key_cache.get(h)
        if hit is not None and hit[1] > t:
            return hit[0]
        row = self.conn.execute("SELECT workspace_id FROM api_keys WHERE key_hash=?"
                                " AND revoked_at IS NULL", (h,)).fetchone()
        if row is None:
            self._key_cache.pop(h, None)
            return None
        ws = str(row["workspace_id"])
        if len(self._key_cache) > 10000:
            self._key_cache.clear()
        self._key_cache[h] = (ws, t + KEY_CACHE_S)
        return ws

    # datasets ------------------------------------------------------------
    def insert_dataset(self, ds: DatasetRow) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO datasets (id, workspace_id, name, task, samples, features, path,"
                " size_bytes, created_at, source, dropped) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (ds["id"], ds["workspace_id"], ds["name"], ds["task"], ds["samples"],
                 json.dumps(ds["features"]), ds["path"], ds["size_bytes"], ds["created_at"],
                 json.dumps(ds["source"]), json.dumps(ds["dropped"] or {})))

    def get_dataset(self, ws: str, ds_id: str) -> DatasetRow | None:
        row = self.conn.execute("SELECT * FROM datasets WHERE id=? AND workspace_id=?",
                                (ds_id, ws)).fetchone()
        if row is None:
            return None
        return _dataset_row(row)

    def dataset_by_id(self, ds_id: str) -> DatasetRow | None:
        row = self.conn.execute("SELECT workspace_id FROM datasets WHERE id=?",
                                (ds_id,)).fetchone()
        return self.get_dataset(row["workspace_id"], ds_id) if row else None

    def list_datasets(self, ws: str) -> list[DatasetRow]:
        rows = self.conn.execute(
            "SELECT * FROM datasets WHERE workspace_id=? ORDER BY created_at DESC, id",
            (ws,)).fetchall()
        return [_dataset_row(r) for r in rows]

    # models --------------------------------------------------------------
    def get_model(self, ws: str, model_id: str) -> ModelRow | None:
        row = self.conn.execute("SELECT * FROM models WHERE id=? AND workspace_id=?",
                                (model_id, ws)).fetchone()
        return as_row(ModelRow, row) if row else None

    def model_by_id(self, model_id: str) -> ModelRow | None:
        row = self.conn.execute("SELECT * FROM models WHERE id=?", (model_id,)).fetchone()
        return as_row(ModelRow, row) if row else None

    def list_models(self, ws: str) -> list[ModelRow]:
        rows = self.conn.execute(
            "SELECT * FROM models WHERE workspace_id=? ORDER BY created_at, id", (ws,)).fetchall()
        return [as_row(ModelRow, r) for r in rows]

    def runs_for_models(self, ws: str) -> dict[str, list[RunRow]]:
        """Every run of the workspace's models, oldest first, grouped by model."""
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE workspace_id=? ORDER BY seq", (ws,)).fetchall()
        out: dict[str, list[RunRow]] = {}
        for r in rows:
            out.setdefault(r["model_id"], []).append(_run_dict(r, self.unrecorded))
        return out

    def promotions(self, model_id: str) -> list[PromotionRow]:
        rows = self.conn.execute(
            "SELECT at, from_version, to_version FROM promotions WHERE model_id=? ORDER BY id",
            (model_id,)).fetchall()
        return [as_row(PromotionRow, r) for r in rows]

    def promote(self, model_id: str, version: str) -> str | None:
        """Make `version` active; return the version that was active before."""
        with self.tx() as c:
            row = c.execute("SELECT active_version FROM models WHERE id=?"
                            + self.engine.for_update, (model_id,)).fetchone()
            before = row["active_version"] if row else None
            t = now()
            c.execute("UPDATE models SET active_version=?, updated_at=? WHERE id=?",
                      (version, t, model_id))
            c.execute("INSERT INTO promotions (model_id, at, from_version, to_version)"
                      " VALUES (?,?,?,?)", (model_id, t, before, version))
        return before

    def delete_model(self, model_id: str) -> list[str]:
        """Delete the model and its runs, logs, promotions and deployments; the IDs of its runs."""
        with self.tx() as c:
            run_ids = [r["id"] for r in c.execute("SELECT id FROM runs WHERE model_id=?",
                                                  (model_id,))]
            c.executemany("DELETE FROM run_logs WHERE run_id=?", [(r,) for r in run_ids])
            c.execute("DELETE FROM runs WHERE model_id=?", (model_id,))
            c.execute("DELETE FROM promotions WHERE model_id=?", (model_id,))
            c.execute("DELETE FROM deployments WHERE model_id=?", (model_id,))
            c.execute("DELETE FROM models WHERE id=?", (model_id,))
        return run_ids

    # runs ----------------------------------------------------------------
    def submit_run(self, ws: str, *, robot_id: str, task: str, name: str | None,
                   dataset_id: str, architecture: str, config: dict[str, Any],
                   samples: int, estimated_duration_s: float,
                   max_queued: int) -> tuple[RunRow, int] | None:
        """Queue a run on the model for (robot_id, task), creating it when needed.

        Returns (run, position_in_queue), or None when the workspace already
        has `max_queued` runs waiting.
        """
        t = now()
        lock = self.engine.for_update
        with self.tx() as c:
            # submits to one workspace wait for each other (PostgreSQL: its row's lock),
            # so that the queue's limit holds and a model is made once
            c.execute("SELECT id FROM workspaces WHERE id=?" + lock, (ws,))
            waiting = c.execute("SELECT COUNT(*) FROM runs WHERE workspace_id=? AND"
                                " status='queued'", (ws,)).fetchone()[0]
            if waiting >= max_queued:
                return None
            # the model's row locked: its version numbers stay unique and contiguous
            row = c.execute("SELECT * FROM models WHERE workspace_id=? AND robot_id=? AND task=?"
                            + lock, (ws, robot_id, task)).fetchone()
            if row is None:
                model_id = new_id("mdl_")
                c.execute("INSERT INTO models (id, workspace_id, name, task, robot_id,"
                          " active_version, created_at, updated_at, next_version)"
                          " VALUES (?,?,?,?,?,NULL,?,?,1)",
                          (model_id, ws, name or f"{robot_id}-{task}", task, robot_id, t, t))
                number = 1
            else:
                model_id, number = row["id"], row["next_version"]
                if name:
                    c.execute("UPDATE models SET name=? WHERE id=?", (name, model_id))
            c.execute("UPDATE models SET next_version=?, updated_at=? WHERE id=?",
                      (number + 1, t, model_id))
            run_id = new_id("run_")
            c.execute(
                "INSERT INTO runs (id, model_id, workspace_id, version, dataset_id, task,"
                " architecture, config, status, created_at, estimated_duration_s, samples)"
                " VALUES (?,?,?,?,?,?,?,?,'queued',?,?,?)",
                (run_id, model_id, ws, f"v{number}", dataset_id, task, architecture,
                 json.dumps(config), t, estimated_duration_s, samples))
            c.execute("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)",
                      (run_id, t, f"queued: v{number} on {dataset_id}, {architecture}, "
                                  f"config {json.dumps(config)}"))
            run = _run_dict(c.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone())
            pos = c.execute("SELECT COUNT(*) FROM runs WHERE status='queued' AND seq<=?",
                            (run["seq"],)).fetchone()[0]
        return run, int(pos)

    def get_run(self, run_id: str) -> RunRow | None:
        row = self.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _run_dict(row, self.unrecorded) if row else None

    def list_runs(self, model_id: str) -> list[RunRow]:
        rows = self.conn.execute("SELECT * FROM runs WHERE model_id=? ORDER BY seq DESC",
                                 (model_id,)).fetchall()
        return [_run_dict(r, self.unrecorded) for r in rows]

    def queue_positions(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT id FROM runs WHERE status='queued' ORDER BY seq")
        return {r["id"]: i + 1 for i, r in enumerate(rows)}

    def run_logs(self, run_id: str) -> list[RunLogRow]:
        rows = self.conn.execute("SELECT at, line FROM run_logs WHERE run_id=? ORDER BY id",
                                 (run_id,)).fetchall()
        return [as_row(RunLogRow, r) for r in rows]

    def log(self, run_id: str, line: str) -> None:
        self._writes += 1
        self.conn.execute("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)",
                          (run_id, now(), line))

    def claim_next_run(self, pid_placeholder: int = 0) -> RunRow | None:
        """Move the oldest queued run to `running` (FIFO) and return it, owned by this
        replica. Replicas claim at once: a run another one is claiming is passed over
        (PostgreSQL's SKIP LOCKED), never claimed twice."""
        # An empty queue is seen on a plain read: the dispatcher's polls then commit
        # nothing, so cached answers (Store.cached) stay valid while nothing changes.
        if self.conn.execute("SELECT 1 FROM runs WHERE status='queued' LIMIT 1").fetchone() is None:
            return None
        with self.tx() as c:
            row = c.execute("SELECT id FROM runs WHERE status='queued' ORDER BY seq LIMIT 1"
                            + self.engine.skip_locked).fetchone()
            if row is None:
                return None
            t = now()
            c.execute("UPDATE runs SET status='running', started_at=?, pid=?,"
                      " progress=?, owner=? WHERE id=? AND status='queued'",
                      (t, pid_placeholder, None, self.replica_id, row["id"]))
            c.execute("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)",
                      (row["id"], t, "running: worker process starting"))
            return _run_dict(c.execute("SELECT * FROM runs WHERE id=?", (row["id"],)).fetchone())

    def set_pid(self, run_id: str, pid: int) -> None:
        self._writes += 1
        self.conn.execute("UPDATE runs SET pid=? WHERE id=?", (pid, run_id))

    def set_progress(self, run_id: str, progress: dict[str, Any], line: str,
                     attempt: int | None = None) -> bool:
        """Record an epoch; False when the run is no longer running (cancelled, deleted),
        or no longer `attempt` (see finish_run)."""
        fence, fenced = _attempt_fence(attempt)
        with self.tx() as c:
            cur = c.execute("UPDATE runs SET progress=? WHERE id=? AND status='running'" + fence,
                            (json.dumps(progress), run_id, *fenced))
            if cur.rowcount:
                c.execute("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)",
                          (run_id, now(), line))
            return cur.rowcount > 0

    def finish_run(self, run_id: str, status: str, *, error: str | None = None,
                   metrics: dict[str, Any] | None = None, artifact_size_mb: float | None = None,
                   sha256: str | None = None, only_from: tuple[str, ...] = ACTIVE,
                   line: str | None = None, attempt: int | None = None,
                   publish: Callable[[], None] | None = None) -> bool:
        """Move a run to a final status, only when it is still in `only_from`.

        `attempt`: only while the run is still that attempt at training it (its
        `interruptions` when it was claimed): a worker whose run was re-queued and
        claimed again meanwhile (its replica stalled past the lease) writes nothing.
        `publish`: called once the run's row is changed, before the commit and under
        its lock (it puts the artifact in place); if it raises, nothing changes.
        """
        assert status in FINISHED
        t = now()
        fence, fenced = _attempt_fence(attempt)
        with self.tx() as c:
            marks = ",".join("?" * len(only_from))
            cur = c.execute(
                f"UPDATE runs SET status=?, completed_at=?, error=?, metrics=?,"
                f" artifact_size_mb=?, sha256=?, duration_s=CASE WHEN started_at IS NULL"
                f" THEN NULL ELSE ? - started_at END WHERE id=? AND status IN ({marks})" + fence,
                (status, t, error, json.dumps(metrics) if metrics else None, artifact_size_mb,
                 sha256, t, run_id, *only_from, *fenced))
            if cur.rowcount and publish is not None:
                publish()
            if cur.rowcount:
                c.execute("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)",
                          (run_id, t, line or (f"{status}: {error}" if error else status)))
                c.execute("UPDATE models SET updated_at=? WHERE id=(SELECT model_id FROM runs"
                          " WHERE id=?)", (t, run_id))
            return cur.rowcount > 0

    def requeue_run(self, run_id: str, line: str, attempt: int | None = None) -> bool:
        """Put a run that was `running` back in the queue, at its original place (its seq);
        with `attempt`, only while it is still that attempt (see finish_run)."""
        fence, fenced = _attempt_fence(attempt)
        with self.tx() as c:
            cur = c.execute("UPDATE runs SET status='queued', started_at=NULL, pid=NULL,"
                            " progress=NULL, owner=NULL, interruptions=interruptions+1"
                            " WHERE id=? AND status='running'" + fence, (run_id, *fenced))
            if cur.rowcount:
                c.execute("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)",
                          (run_id, now(), line))
            return cur.rowcount > 0

    def show_unrecorded(self, run_id: str, fields: RunOutcome | None) -> None:
        """Show `fields` over the run's row until its outcome is written (None: written)."""
        if fields is None:
            if self.unrecorded.pop(run_id, None) is None:
                return
        else:
            self.unrecorded[run_id] = fields
        self._writes += 1  # cached answers built before are stale

    def mark_artifact_error(self, run_id: str, reason: str | None) -> None:
        """Record why a complete run's artifact cannot be served (corrupted, empty),
        or None once it verifies again."""
        with self.tx() as c:
            c.execute("UPDATE runs SET artifact_error=? WHERE id=?", (reason, run_id))
            c.execute("INSERT INTO run_logs (run_id, at, line) VALUES (?,?,?)",
                      (run_id, now(), f"artifact refused: {reason}" if reason
                       else "artifact verified again"))

    def running_runs(self) -> list[RunRow]:
        """The `running` runs this process looks after: all of them for a store that is
        no replica; for a replica, its own, those of no replica and those of replicas
        that are gone (replica_gone)."""
        rows = self.conn.execute("SELECT * FROM runs WHERE status='running'").fetchall()
        if self.replica_id is None:
            return [_run_dict(r) for r in rows]
        owners = {r["owner"] for r in rows} - {None, self.replica_id}
        gone = {o for o in owners if self.replica_gone(o)}
        return [_run_dict(r) for r in rows if r["owner"] in (None, self.replica_id)
                or r["owner"] in gone]

    # replicas ------------------------------------------------------------
    def register_replica(self) -> str:
        """Serve as a new replica (its id kept in replica_id); heartbeat() keeps it alive."""
        replica = new_id("rep_")
        t = now()
        with self.tx() as c:
            c.execute("INSERT INTO replicas (id, host, pid, started_at, heartbeat_at)"
                      " VALUES (?,?,?,?,?)", (replica, HOST, os.getpid(), t, t))
            # replicas gone for a day are forgotten (their runs were taken over long ago)
            c.execute("DELETE FROM replicas WHERE heartbeat_at<?", (t - 86400,))
        self.replica_id = replica
        return replica

    def heartbeat(self) -> None:
        if self.replica_id is None:
            return
        with self.tx() as c:
            c.execute("UPDATE replicas SET heartbeat_at=? WHERE id=?", (now(), self.replica_id))

    def release_replica(self) -> None:
        """This replica stops (its runs were stopped and re-queued by its dispatcher)."""
        if self.replica_id is None:
            return
        with self.tx() as c:
            c.execute("DELETE FROM replicas WHERE id=?", (self.replica_id,))

    def replica_gone(self, replica: str) -> bool:
        """No heartbeat for REPLICA_LEASE_S, or its process on this host has ended."""
        row = self.conn.execute("SELECT host, pid, heartbeat_at FROM replicas WHERE id=?",
                                (replica,)).fetchone()
        if row is None or now() - row["heartbeat_at"] > REPLICA_LEASE_S:
            return True
        if row["host"] == HOST:
            try:
                os.kill(int(row["pid"]), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def shared_secret(self, name: str) -> bytes:
        """A random secret made once for every process on this database (the first
        asks, the others read it)."""
        with self.tx() as c:
            c.execute("INSERT INTO settings (key, value) VALUES (?,?) ON CONFLICT (key)"
                      " DO NOTHING", (name, secrets.token_bytes(32).hex()))
            row = c.execute("SELECT value FROM settings WHERE key=?", (name,)).fetchone()
        return bytes.fromhex(row["value"])

    # throughput (for honest estimates) -------------------------------------
    def throughput(self, key: str) -> tuple[float, float] | None:
        row = self.conn.execute("SELECT samples_per_s, overhead_s FROM throughput WHERE key=?",
                                (key,)).fetchone()
        return (float(row[0]), float(row[1])) if row else None

    def record_throughput(self, key: str, samples_per_s: float, overhead_s: float,
                          weight: float = 0.5) -> None:
        """Blend a new measurement into the stored one (exponential average)."""
        with self.tx() as c:
            row = c.execute("SELECT samples_per_s, overhead_s FROM throughput WHERE key=?"
                            + self.engine.for_update, (key,)).fetchone()
            if row is not None:
                samples_per_s = (1 - weight) * row[0] + weight * samples_per_s
                overhead_s = (1 - weight) * row[1] + weight * overhead_s
            c.execute("INSERT INTO throughput (key, samples_per_s, overhead_s, updated_at)"
                      " VALUES (?,?,?,?) ON CONFLICT (key) DO UPDATE SET"
                      " samples_per_s=excluded.samples_per_s, overhead_s=excluded.overhead_s,"
                      " updated_at=excluded.updated_at",
                      (key, samples_per_s, overhead_s, now()))
