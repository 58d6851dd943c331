"""The backend under faults, on real servers: a full disk, a held database lock,
a worker killed while its failure cannot be written, a server dying under a
run another server watches, and the calibration process reaped."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_crash import _worker_pid, wait_training

from conftest import DATABASES, Server, cli, wait_run
from kairo_features.tasks import default_features

DISK = "4m"  # small enough that SQLite's WAL (checkpointed at ~4 MB) cannot be reused
LONG = {"epochs": 1000, "batch_size": 4}


def db_status(data_dir: Path, run_id: str) -> str:
    """The run's status as the database holds it (a read-only connection of the test)."""
    url = DATABASES.get(data_dir)
    if url:  # PostgreSQL: a plain read is never blocked by write locks
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            row = pg.execute("SELECT status FROM runs WHERE id=%s", (run_id,)).fetchone()
        return str(row[0]) if row else "missing"
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'kairo.db'}?mode=ro",
                                            uri=True, timeout=30)) as c:
        row = c.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
    return str(row[0]) if row else "missing"


def wait_for(check: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


@contextlib.contextmanager
def write_lock(data_dir: Path) -> Iterator[Any]:
    """Hold the database's write lock, as a stuck writer would (PostgreSQL: every
    table a train request or a run's end writes, locked against writes, not reads)."""
    url = DATABASES.get(data_dir)
    if url:
        import psycopg

        pg = psycopg.connect(url, autocommit=True)
        pg.execute("BEGIN")
        pg.execute("LOCK TABLE workspaces, models, runs, run_logs IN EXCLUSIVE MODE")
        try:
            yield pg
        finally:
            pg.execute("ROLLBACK")
            pg.close()
        return
    conn = sqlite3.connect(data_dir / "kairo.db", isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A DISK-sized tmpfs the test fills (needs root, as CI and this machine run)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the disk-full test "
                    "needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def kill_leftovers(data_dir: Path) -> None:
    """End the processes still working on `data_dir` once its servers are gone
    (a calibration outlives a server killed with SIGKILL)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if str(data_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(int(pid), signal.SIGKILL)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; the filler file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def npz_upload(api: httpx.Client, samples: int) -> httpx.Response:
    features = default_features("navigation")
    rng = np.random.default_rng(0)
    arrays = {e["name"]: rng.random((samples, *e["shape"]), dtype=np.float32)
              for e in features["inputs"] + features["outputs"]}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return api.post("/v1/datasets", files={"file": ("d.npz", buf.getvalue())},
                    data={"features": json.dumps(features), "name": "full"})


def test_disk_full(small_disk: Path) -> None:
    key = cli(small_disk, "keys", "create", "--workspace", "full")
    ds = cli(small_disk, "datasets", "create-demo", "navigation", "--workspace", "full",
             "--samples", "600")
    srv = Server(small_disk).start()
    try:
        with srv.client(key) as c:
            short = c.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_full",
                                                     "task": "navigation",
                                                     "config": {"epochs": 1}}).json()
            assert wait_run(c, short["model_id"], short["run_id"])["status"] == "complete"
            long = c.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_full",
                                                    "task": "navigation",
                                                    "config": LONG}).json()
            wait_training(c, long)
            filler = fill(small_disk)
            try:
                # a failed worker whose failure cannot be written still ends failed
                run = wait_run(c, long["model_id"], long["run_id"], timeout=60)
                assert run["status"] == "failed", run
                assert "disk" in run["error"] and "full" in run["error"], run["error"]
                # requests that write answer 507 with a message that says why
                for r in (c.post(f"/v1/models/{short['model_id']}/export",
                                 json={"format": "ros2-pkg", "version": "v1"}),
                          c.post("/v1/models/train", json={
                              "dataset_id": ds, "robot_id": "rob_full", "task": "navigation",
                              "config": {"epochs": 1}}),
                          npz_upload(c, 2000)):
                    assert r.status_code == 507, (r.status_code, r.text)
                    error = r.json()["error"]
                    assert error["code"] == "insufficient_storage", error
                    assert "disk" in error["message"] and "full" in error["message"]
                # reads still answer
                assert c.get(f"/v1/models/{short['model_id']}").status_code == 200
                assert c.get("/health").status_code == 200
            finally:
                filler.unlink()
            # with space again, the outcome is written without a restart
            assert wait_for(lambda: db_status(small_disk, long["run_id"]) == "failed")
            assert not list((small_disk / "artifacts").rglob("*.tmp"))
            again = c.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_full",
                                                     "task": "navigation",
                                                     "config": {"epochs": 1}})
            assert again.status_code == 202, again.text
            done = wait_run(c, again.json()["model_id"], again.json()["run_id"])
            assert done["status"] == "complete", done
    finally:
        srv.stop()
        kill_leftovers(small_disk)


def test_held_write_lock_answers_503_and_reads_go_on(server: Server, api: httpx.Client,
                                                     demo: dict[str, str]) -> None:
    train = {"dataset_id": demo["navigation"], "robot_id": "rob_locked", "task": "navigation",
             "config": {"epochs": 1}}
    writes: list[httpx.Response] = []

    def write() -> None:
        with server.client(None) as c:
            c.headers.update(api.headers)
            writes.append(c.post("/v1/models/train", json=train))

    with write_lock(server.data_dir):
        t = time.monotonic()
        r = api.post("/v1/models/train", json=train)
        answered_s = time.monotonic() - t
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "unavailable"
        assert int(r.headers["retry-after"]) >= 1
        assert "busy" in r.json()["error"]["message"]
        # many writers waiting on the lock do not stall the readers
        writers = [threading.Thread(target=write) for _ in range(40)]
        for w in writers:
            w.start()
        read_s = []
        for _ in range(20):
            t = time.monotonic()
            for path in ("/health", "/v1/models", f"/v1/datasets/{demo['navigation']}"):
                assert api.get(path).status_code == 200, path
            read_s.append(time.monotonic() - t)
        for w in writers:
            w.join(timeout=120)
        print(f"503 after {answered_s:.2f} s under a held lock; 3 reads took "
              f"{max(read_s):.3f} s at most ({np.median(read_s):.3f} s median) beside 40 "
              "blocked writers")
        assert len(writes) == 40 and {w.status_code for w in writes} == {503}
    accepted = api.post("/v1/models/train", json=train)
    assert accepted.status_code == 202, accepted.text
    a = accepted.json()
    assert api.post(f"/v1/models/{a['model_id']}/runs/{a['run_id']}/cancel").status_code == 200
    assert api.delete(f"/v1/models/{a['model_id']}").status_code == 200


def test_killed_worker_ends_failed_while_the_database_is_locked(
        server: Server, api: httpx.Client, demo: dict[str, str]) -> None:
    long = api.post("/v1/models/train", json={"dataset_id": demo["navigation"],
                                              "robot_id": "rob_locked_kill",
                                              "task": "navigation", "config": LONG}).json()
    wait_training(api, long)
    pid = wait_for(lambda: _worker_pid(long["run_id"]))
    assert pid
    with write_lock(server.data_dir):
        t = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        run = wait_run(api, long["model_id"], long["run_id"], timeout=30)
        print(f"killed worker's run shown failed after {time.monotonic() - t:.2f} s "
              "with the database locked")
        assert run["status"] == "failed" and "signal 9" in run["error"], run
        listed = next(m for m in api.get("/v1/models").json()["data"]
                      if m["id"] == long["model_id"])
        assert listed["versions"][-1]["status"] == "failed", listed  # the cached list too
        assert db_status(server.data_dir, long["run_id"]) == "running"  # not written yet
    assert wait_for(lambda: db_status(server.data_dir, long["run_id"]) == "failed")
    assert api.delete(f"/v1/models/{long['model_id']}").status_code == 200


def test_a_run_whose_server_died_is_caught_by_another(tmp_path: Path) -> None:
    """Two servers on one data dir: the one left re-queues (and trains) the run whose
    server and worker died, within seconds and without a restart."""
    key = cli(tmp_path, "keys", "create", "--workspace", "pair")
    ds = cli(tmp_path, "datasets", "create-demo", "navigation", "--workspace", "pair",
             "--samples", "600")
    servers = [Server(tmp_path).start(), Server(tmp_path).start()]
    try:
        with servers[0].client(key) as c:
            long = c.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_pair",
                                                    "task": "navigation",
                                                    "config": LONG}).json()
            wait_training(c, long)
            pid = wait_for(lambda: _worker_pid(long["run_id"]))
            assert pid
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            dying = next(s for s in servers if s.proc is not None and s.proc.pid == parent)
            left = next(s for s in servers if s is not dying)
            assert dying.proc is not None
            dying.proc.send_signal(signal.SIGKILL)  # its worker dies with it
            dying.proc.wait(timeout=10)
            dying.proc = None
        with left.client(key) as c:
            t = time.monotonic()

            def requeued() -> dict[str, Any] | None:
                run = c.get(f"/v1/models/{long['model_id']}/runs/{long['run_id']}").json()
                return run if any("re-queued" in ln for ln in run["logs"]) else None

            run = wait_for(requeued, timeout=30)
            assert run, "the run of the dead server was never caught"
            print(f"run of a killed server re-queued by the other after "
                  f"{time.monotonic() - t:.2f} s")
            run = wait_run(c, long["model_id"], long["run_id"], timeout=60,
                           until=("running", "failed", "complete"))
            assert run["status"] == "running", run
            new_pid = wait_for(lambda: _worker_pid(long["run_id"]))
            assert new_pid and new_pid != pid
    finally:
        for s in servers:
            s.stop()
        kill_leftovers(tmp_path)


def test_calibration_leaves_no_zombie(server: Server) -> None:
    """The throughput calibration the server started is reaped once it ends."""
    assert server.proc is not None

    def children() -> list[tuple[int, str, bytes]]:
        """(pid, state, command line) of the server's child processes."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == server.proc.pid:  # type: ignore[union-attr]
                    found.append((int(pid), fields[0],
                                  Path(f"/proc/{pid}/cmdline").read_bytes()))
        return found

    def calibrating() -> bool:
        return any(b"kairo_backend.training.calibrate" in cmd for _, _, cmd in children())

    def zombies() -> list[int]:
        return [pid for pid, state, _ in children() if state == "Z"]

    assert wait_for(lambda: not calibrating(), timeout=300, every=0.5), "calibration never ended"
    # the dispatcher reaps within its next pass (0.25 s); allow a loaded machine 10 s
    assert wait_for(lambda: not zombies(), timeout=10), f"zombie children: {zombies()}"
