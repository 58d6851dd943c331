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

A run always reaches a final state while the server runs: when recording a
worker's end fails (a full disk, a busy database) the outcome is kept in
memory, shown by the API, and written as soon as the database takes it; a
sweep every SWEEP_INTERVAL_S fails any `running` run whose worker process is
gone without this server having reaped it.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kairo_backend.core.config import Settings
from kairo_backend.core.util import now
from kairo_backend.errors import is_disk_full, storage_error
from kairo_backend.store import Store

log = logging.getLogger("kairo_backend.jobs")

INTERRUPTED = ("interrupted: the backend stopped twice while this run was training; "
               "submit the train request again")
# Re-queues of one run after the server stopped under it.
MAX_REQUEUES = 1
DISK_FULL_NOTE = "the disk of the data dir is full"
# How often running runs are checked for a worker process that is gone.
SWEEP_INTERVAL_S = 1.0
# Runs claimed this recently are left alone by the sweep.
SWEEP_GRACE_S = 5.0


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
        # failures to write still: run id -> (model id, version, reason)
        self._unrecorded: dict[str, tuple[str, str, str]] = {}
        self._next_sweep = 0.0

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
            job.log_file.close()
            try:
                run = self.store.get_run(job.run_id)
                if run is not None:
                    self._interrupted(run)
            except Exception:  # the next start recovers it
                log.exception("could not re-queue run %s on stop", job.run_id)
        if self._calibration is not None:
            if self._calibration.poll() is None:
                self._calibration.kill()
            self._calibration.wait(timeout=10)

    def recover(self) -> None:
        for run in self.store.running_runs():
            pid = run.get("pid") or 0
            if pid and _is_our_worker(pid, run["id"]):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self._interrupted(run)
            except Exception:  # noqa: BLE001 - a busy database: the sweep does it later
                log.exception("could not recover run %s now", run["id"])

    def _interrupted(self, run: dict[str, Any]) -> None:
        """A server stopped under a running run: re-queue it, or fail it the second time."""
        if run.get("interruptions", 0) >= MAX_REQUEUES:
            self._fail(run["id"], run["model_id"], run["version"], INTERRUPTED)
            log.warning("run %s was interrupted again; marked failed", run["id"])
            return
        _remove_tmp(self.settings.artifacts_dir / run["model_id"], run["version"])
        self.store.requeue_run(run["id"], "re-queued: the backend stopped while this run was "
                                          "training; it trains again from the start")
        log.warning("run %s was interrupted by a stop; re-queued", run["id"])

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
                self._record_pending()
                if time.monotonic() >= self._next_sweep:
                    self._next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                    self._sweep()
                if self._calibration is not None and self._calibration.poll() is not None:
                    self._calibration = None  # reaped: no zombie left behind
                while self.busy() < self.settings.workers and not self._stop.is_set():
                    if not self._start_next():
                        break
            except Exception as exc:  # keep dispatching whatever one run did
                if storage_error(exc) is not None:  # a busy database, a full disk: retried
                    log.warning("dispatcher step postponed: %s", exc)
                else:
                    log.exception("dispatcher step failed")
            self._wake.wait(timeout=0.25)
            self._wake.clear()

    def _start_next(self) -> bool:
        run = self.store.claim_next_run()
        if run is None:
            return False
        log_path = self.settings.logs_dir / f"{run['id']}.log"
        cmd = [sys.executable, "-m", "kairo_backend.training.worker",
               "--data-dir", str(self.settings.data_dir), "--run-id", run["id"],
               "--parent-pid", str(os.getpid()), "--threads", str(self.settings.torch_threads)]
        try:
            self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
            log_file = log_path.open("ab")
        except OSError as exc:
            self._fail(run["id"], run["model_id"], run["version"],
                       f"could not open the run's log file: {exc}")
            return True
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, env=_worker_env(),
                                    cwd=self.settings.data_dir, start_new_session=True)
        except OSError as exc:
            log_file.close()
            self._fail(run["id"], run["model_id"], run["version"],
                       f"could not start worker: {exc}")
            return True
        with self._lock:
            self._jobs[run["id"]] = _Job(run["id"], run["model_id"], run["version"], proc,
                                         log_file, log_path)
        try:
            self.store.set_pid(run["id"], proc.pid)
        except Exception as exc:  # noqa: BLE001 - the sweep finds the worker by its command line
            log.warning("could not record the pid of run %s: %s", run["id"], exc)
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
            self._fail(job.run_id, job.model_id, job.version, reason[:500])

    def _fail(self, run_id: str, model_id: str, version: str, reason: str) -> None:
        """Fail a run that is still `running`, freeing its partial artifact first
        (on a full disk that is the space the record needs); when the write
        fails the outcome is shown from memory and written later."""
        _remove_tmp(self.settings.artifacts_dir / model_id, version)
        try:
            self.store.finish_run(run_id, "failed", error=reason, only_from=("running",))
            run = self.store.get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - a full disk or a busy database
            if is_disk_full(exc) and DISK_FULL_NOTE not in reason:
                reason = f"{reason} ({DISK_FULL_NOTE})"[-500:]
            if run_id not in self._unrecorded:
                log.warning("could not record that run %s failed (%s); retrying", run_id, exc)
                self.store.show_unrecorded(run_id, {"status": "failed", "error": reason,
                                                    "completed_at": now()})
            self._unrecorded[run_id] = (model_id, version, reason)
            return
        self._unrecorded.pop(run_id, None)
        self.store.show_unrecorded(run_id, None)
        if run is None:  # the model was deleted meanwhile: leave none of its files
            self.remove_files(model_id, [run_id])

    def _record_pending(self) -> None:
        for run_id, (model_id, version, reason) in list(self._unrecorded.items()):
            self._fail(run_id, model_id, version, reason)

    def _sweep(self) -> None:
        """Catch runs marked running whose worker process is gone without this
        server having reaped it (its server died, or this one lost track after
        an error): re-queued once, as after a stop, then failed."""
        with self._lock:
            tracked = set(self._jobs)
        for run in self.store.running_runs():
            if run["id"] in tracked or run["id"] in self._unrecorded:
                continue
            if now() - (run["started_at"] or 0) < SWEEP_GRACE_S:
                continue  # another server may be starting its worker right now
            if _worker_alive(run.get("pid") or 0, run["id"]):
                continue
            log.warning("run %s is running but no worker process trains it", run["id"])
            self._interrupted(run)

    def remove_files(self, model_id: str, run_ids: list[str]) -> None:
        """A deleted model's artifacts and its runs' log files."""
        shutil.rmtree(self.settings.artifacts_dir / model_id, ignore_errors=True)
        for run_id in run_ids:
            (self.settings.logs_dir / f"{run_id}.log").unlink(missing_ok=True)

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


def _worker_alive(pid: int, run_id: str) -> bool:
    """Whether a worker process trains `run_id` (by its pid, else by a look at every process)."""
    if pid and _is_our_worker(pid, run_id):
        return True
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True  # cannot tell: leave the run alone
    return any(_is_our_worker(p, run_id) for p in pids)


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
