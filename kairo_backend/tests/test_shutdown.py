"""`kairo-backend serve` ends quietly with exit code 0 on SIGINT or SIGTERM, once or
twice, idle or while a run trains; and it works from any working directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import Server, cli, wait_run


class RecordingServer(Server):
    """A Server that keeps everything the process prints."""

    lines: list[str]

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def signal_group(self, *signals: int) -> str:
        """Send `signals` to the server's process group, as a terminal does; its output."""
        assert self.proc is not None
        for sig in signals:
            os.killpg(self.proc.pid, sig)
            time.sleep(0.2)
        try:
            rc = self.proc.wait(timeout=60)
        finally:
            self.stop(signal.SIGKILL)
        output = "".join(self.lines)
        assert rc == 0, f"exit code {rc}; output:\n{output}"
        return output


def start(data_dir: Path) -> RecordingServer:
    srv = RecordingServer(data_dir)
    srv.lines = []
    srv.start()
    return srv


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM,), (signal.SIGTERM, signal.SIGTERM)],
                         ids=["int", "int-int", "term", "term-term"])
def test_signals_end_the_server_quietly(tmp_path: Path, signals: tuple[int, ...]) -> None:
    srv = start(tmp_path)
    assert httpx.get(srv.url + "/health", timeout=30).status_code == 200
    output = srv.signal_group(*signals)
    assert "Traceback" not in output and "CancelledError" not in output, output


def test_sigint_while_a_run_trains(tmp_path: Path) -> None:
    ds = cli(tmp_path, "datasets", "create-demo", "navigation", "--workspace", "w",
             "--samples", "3000")
    key = cli(tmp_path, "keys", "create", "--workspace", "w")
    srv = start(tmp_path)
    with srv.client(key) as api:
        r = api.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_s",
                                               "task": "navigation",
                                               "config": {"epochs": 1000}})
        assert r.status_code == 202, r.text
        run = wait_run(api, r.json()["model_id"], r.json()["run_id"], until=("running",))
        assert run["status"] == "running"
    output = srv.signal_group(signal.SIGINT, signal.SIGINT)
    assert "Traceback" not in output and "CancelledError" not in output, output


def test_relative_data_dir_trains(tmp_path: Path) -> None:
    """A relative --data-dir is resolved once: the CLI, the server and its worker
    processes (started in other directories) all use the same place."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run_cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "kairo_backend", *args, "--data-dir",
                              "d"], check=True, capture_output=True, text=True,
                             timeout=120, cwd=cwd)
        return out.stdout.strip().splitlines()[-1]

    ds = run_cli("datasets", "create-demo", "navigation", "--workspace", "w",
                 "--samples", "300")
    key = run_cli("keys", "create", "--workspace", "w")
    proc = subprocess.Popen([sys.executable, "-m", "kairo_backend", "serve", "--port", "0",
                             "--data-dir", "d"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    srv = RecordingServer(cwd / "d", proc=proc)
    srv.lines = []
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "listening on " in first, first
    srv.url = first.split("listening on ")[1].strip()
    threading.Thread(target=srv._drain, daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(srv.url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        with srv.client(key) as api:
            r = api.post("/v1/models/train", json={"dataset_id": ds, "robot_id": "rob_r",
                                                   "task": "navigation",
                                                   "config": {"epochs": 2}})
            assert r.status_code == 202, r.text
            run = wait_run(api, r.json()["model_id"], r.json()["run_id"])
            assert run["status"] == "complete", run
            assert run["metrics"]["epochs_run"] == 2
    finally:
        srv.stop()
    assert (cwd / "d" / "kairo.db").is_file()
    assert not (cwd / "d" / "d").exists(), "a second data dir inside the first"
