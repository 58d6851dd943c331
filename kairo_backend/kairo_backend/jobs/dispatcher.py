"""Runs queued runs, oldest first, each in its own worker process.

A daemon thread in the server claims runs from the SQLite queue while fewer
than `workers` processes are busy, starts `kairo_backend.training.worker`
for each, and reaps them. A crash or a kill of a worker fails (or cancels)
that run only; the server keeps serving.

A run the server stops under (a crash, or a stop while it trains) goes back
to the queue at its old place and trains again from the start when the
server runs again, so that a short outage costs time, not the run. A run
interrupted a second time ends `failed` with the reason "interrupted", so a
run that brings the server down cannot do so forever. Its log tells both.
Queued runs stay queued.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kairo_backend.core.config import Settings
from kairo_backend.store import Store

log = logging.getLogger("kairo_backend.jobs")

INTERRUPTED = ("interrupted: the backend stopped twice while this run was training; "
               "submit the train request again")
# Re-queues of one run after the server stopped under it.
MAX_REQUEUES = 1


@dataclass
class _Job:
    run_id: str
    model_id: str
    version: str
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes]
    log_path: Path


class Dispatcher:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._calibration: subprocess.Popen[bytes] | None = None

    # lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="kairo-dispatcher",
                                        daemon=True)
        self._thread.start()
        self._maybe_calibrate()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.proc.kill()
            job.proc.wait(timeout=10)
            run = self.store.get_run(job.run_id)
            if run is not None:
                self._interrupted(run)
            job.log_file.close()
        if self._calibration is not None and self._calibration.poll() is None:
            self._calibration.kill()
            self._calibration.wait(timeout=10)

    def recover(self) -> None:
        for run in self.store.running_runs():
            pid = run.get("pid") or 0
            if pid and _is_our_worker(pid, run["id"]):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self._interrupted(run)

    def _interrupted(self, run: dict[str, Any]) -> None:
        """The server stopped under a running run: re-queue it, or fail it the second time."""
        _remove_tmp(self.settings.artifacts_dir / run["model_id"], run["version"])
        if run.get("interruptions", 0) < MAX_REQUEUES:
            self.store.requeue_run(run["id"], "re-queued: the backend stopped while this run was "
                                              "training; it trains again from the start")
            log.warning("run %s was interrupted by a stop; re-queued", run["id"])
        else:
            self.store.finish_run(run["id"], "failed", error=INTERRUPTED, only_from=("running",))
            log.warning("run %s was interrupted again; marked failed", run["id"])

    def wake(self) -> None:
        self._wake.set()

    # control -------------------------------------------------------------
    def kill(self, run_id: str) -> None:
        """Kill a run's worker process, if it has one (cancel and delete use this)."""
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None and job.proc.poll() is None:
            job.proc.kill()
        self._wake.set()

    def busy(self) -> int:
        with self._lock:
            return len(self._jobs)

    # the loop ------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._reap()
                while self.busy() < self.settings.workers and not self._stop.is_set():
                    if not self._start_next():
                        break
            except Exception:  # keep dispatching whatever one run did
                log.exception("dispatcher step failed")
            self._wake.wait(timeout=0.25)
            self._wake.clear()

    def _start_next(self) -> bool:
        run = self.store.claim_next_run()
        if run is None:
            return False
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.settings.logs_dir / f"{run['id']}.log"
        log_file = log_path.open("ab")
        cmd = [sys.executable, "-m", "kairo_backend.training.worker",
               "--data-dir", str(self.settings.data_dir), "--run-id", run["id"],
               "--parent-pid", str(os.getpid()), "--threads", str(self.settings.torch_threads)]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, env=_worker_env(),
                                    cwd=self.settings.data_dir, start_new_session=True)
        except OSError as exc:
            log_file.close()
            self.store.finish_run(run["id"], "failed", error=f"could not start worker: {exc}")
            return True
        self.store.set_pid(run["id"], proc.pid)
        with self._lock:
            self._jobs[run["id"]] = _Job(run["id"], run["model_id"], run["version"], proc,
                                         log_file, log_path)
        log.info("run %s started in process %d", run["id"], proc.pid)
        return True

    def _reap(self) -> None:
        with self._lock:
            done = [j for j in self._jobs.values() if j.proc.poll() is not None]
            for j in done:
                del self._jobs[j.run_id]
        for job in done:
            job.log_file.close()
            rc = job.proc.returncode
            reason = (f"worker process was killed by signal {-rc}" if rc < 0
                      else f"worker process exited with status {rc}")
            tail = _tail(job.log_path)
            if tail:
                reason += f": {tail}"
            # only when the worker did not record an outcome itself
            self.store.finish_run(job.run_id, "failed", error=reason, only_from=("running",))
            run = self.store.get_run(job.run_id)
            if run is None or run["status"] != "complete":
                _remove_tmp(self.settings.artifacts_dir / job.model_id, job.version)

    def _maybe_calibrate(self) -> None:
        keys = ("manipulation/mlp", "navigation/mlp", "object_detection/cnn")
        if all(self.store.throughput(k) is not None for k in keys):
            return
        cmd = [sys.executable, "-m", "kairo_backend.training.calibrate",
               "--data-dir", str(self.settings.data_dir),
               "--threads", str(self.settings.torch_threads)]
        try:
            self._calibration = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=_worker_env(), cwd=self.settings.data_dir,
                start_new_session=True)
        except OSError:
            log.warning("throughput calibration could not start; estimates use defaults")


def _worker_env() -> dict[str, str]:
    """The server's environment; workers run in the data dir so that a source
    checkout in the server's working directory never shadows the package."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _is_our_worker(pid: int, run_id: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kairo_backend.training.worker" in cmdline and run_id.encode() in cmdline


def _remove_tmp(model_dir: Path, version: str) -> None:
    shutil.rmtree(model_dir / f".{version}.tmp", ignore_errors=True)


def _tail(path: Path, limit: int = 300) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""
