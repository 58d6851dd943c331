"""kill -9 the server while a run trains; the restart keeps everything else."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from conftest import Server, cli, wait_run


def test_kill_9_during_training(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = cli(tmp_path, "keys", "create", "--workspace", "crash")
    ds = cli(tmp_path, "datasets", "create-demo", "navigation", "--workspace", "crash",
             "--samples", "600")
    srv = Server(tmp_path).start()
    try:
        with srv.client(key) as c:
            done = c.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_c1",
                                                    "task": "navigation",
                                                    "config": {"epochs": 2}}).json()
            assert wait_run(c, done["model_id"], done["run_id"])["status"] == "complete"
            c.post(f"/v1/models/{done['model_id']}/promote", json={"version": "v1"})
            long = c.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_c1",
                                                    "task": "navigation",
                                                    "config": {"epochs": 1000,
                                                               "batch_size": 4}}).json()
            wait_training(c, long)
            before = c.get(f"/v1/models/{done['model_id']}").json()
        srv = crash_and_restart(srv, tmp_path)
        with srv.client(key) as c:
            # The first interruption re-queues the run; it trains again from the start.
            run = wait_training(c, long)
            assert any(" re-queued: the backend stopped" in line for line in run["logs"])
        srv = crash_and_restart(srv, tmp_path)
        with srv.client(key) as c:
            # The second one fails it, with the reason.
            run = c.get(f"/v1/models/{long['model_id']}/runs/{long['run_id']}").json()
            assert run["status"] == "failed" and "interrupted" in run["error"], run
            after = c.get(f"/v1/models/{done['model_id']}").json()
            assert after["active_version"] == "v1"
            assert after["versions"][0] == before["versions"][0]
            exp = c.post(f"/v1/models/{done['model_id']}/export", json={"format": "onnx"})
            assert exp.status_code == 200
            # the queue still works after the crash
            again = c.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_c1",
                                                     "task": "navigation",
                                                     "config": {"epochs": 1}}).json()
            assert again["model_id"] == done["model_id"]
            assert wait_run(c, again["model_id"], again["run_id"])["status"] == "complete"
    finally:
        srv.stop()


def wait_training(c, accepted) -> dict:  # type: ignore[no-untyped-def]
    """Wait until the run is running and has finished an epoch; return it."""
    run = wait_run(c, accepted["model_id"], accepted["run_id"], timeout=60,
                   until=("running", "failed", "complete"))
    assert run["status"] == "running", run
    deadline = time.monotonic() + 60
    while (run["progress"] or {}).get("epoch", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        run = c.get(f"/v1/models/{accepted['model_id']}/runs/{accepted['run_id']}").json()
    assert run["status"] == "running" and run["progress"]["epoch"] >= 1, run
    return run


def crash_and_restart(srv: Server, data_dir: Path) -> Server:
    """kill -9 the server alone, as a crash would, and start it again on the same data."""
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=10)
    srv.proc = None
    return Server(data_dir).start()


def _worker_pid(run_id: str) -> int | None:
    import os

    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"kairo_backend.training.worker" in cmd and run_id.encode() in cmd:
            return int(pid)
    return None


def test_worker_crash_fails_the_run_not_the_server(api, demo) -> None:  # type: ignore[no-untyped-def]
    import os

    r = api.post("/v1/models/train", json={"dataset_id": demo["navigation"],
                                           "robot_id": "rob_crashy", "task": "navigation",
                                           "config": {"epochs": 1000, "batch_size": 4}}).json()
    run = wait_run(api, r["model_id"], r["run_id"], timeout=60,
                   until=("running", "failed", "complete"))
    assert run["status"] == "running"
    pid = None
    deadline = time.monotonic() + 30
    while pid is None and time.monotonic() < deadline:
        pid = _worker_pid(r["run_id"])
        time.sleep(0.1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    run = wait_run(api, r["model_id"], r["run_id"], timeout=30)
    assert run["status"] == "failed" and "signal 9" in run["error"]
    assert api.get("/health").status_code == 200
    assert api.delete(f"/v1/models/{r['model_id']}").status_code == 200
