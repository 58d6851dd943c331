"""Runs queued runs, oldest first, each on the server's executor.

A daemon thread in the server claims runs from the SQLite queue while fewer
than `workers` runs are training, hands each to the executor
(kairo_backend.jobs.executor: a local worker process, or a Ray task) and
reaps them. A crash or a kill of a worker fails (or cancels) that run only;
the server keeps serving. A run whose Ray worker or node dies is re-queued
as after a stop (below).

A run the server stops under (a crash, or a stop while it trains) goes back
to the queue at its old place and trains again from the start when the
server runs again, so that a short outage costs time, not the run. A run
interrupted a second time ends `failed` with the reason "interrupted", so a
run that brings the server (or its Ray worker) down cannot do so forever. Its log tells both.
Queued runs stay queued.

A run always reaches a final state while the server runs: when recording a
worker's end fails (a full disk, a busy database) the outcome is kept in
memory, shown by the API, and written as soon as the database takes it; a
sweep every SWEEP_INTERVAL_S re-queues (or fails) any `running` run whose
worker is gone without this server having reaped it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from kairo_backend.core.config import Settings
from kairo_backend.core.util import now
from kairo_backend.errors import is_disk_full, storage_error
from kairo_backend.jobs.executor import Executor, Job, LaunchError, make_executor, worker_env
from kairo_backend.store import Store
from kairo_backend.store.rows import RunRow
from kairo_backend.training.worker import unfinished_artifact_dir

log = logging.getLogger("kairo_backend.jobs")

# Why a run stopped training without failing itself (the log line and the final error).
BACKEND_STOPPED = "the backend stopped"
INTERRUPTED = ("interrupted: {cause} while this run was training, for the second time; "
               "submit the train request again")
# Re-queues of one run after the server stopped under it.
MAX_REQUEUES = 1
DISK_FULL_NOTE = "the disk of the data dir is full"
# How often running runs are checked for a worker process that is gone.
SWEEP_INTERVAL_S = 1.0
# Runs claimed this recently are left alone by the sweep.
SWEEP_GRACE_S = 5.0


class Dispatcher:
    def __init__(self, settings: Settings, store: Store,
                 executor: Executor | None = None) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor or make_executor(settings)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._calibration: subprocess.Popen[bytes] | None = None
        # failures to write still: run id -> (model id, version, reason, attempt)
        self._unrecorded: dict[str, tuple[str, str, str, int]] = {}
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
            try:
                self.executor.stop(job)
            except Exception:  # noqa: BLE001 - stop the others all the same
                log.exception("could not stop the job of run %s", job.run_id)
            try:
                run = self.store.get_run(job.run_id)
                if run is not None:
                    self._interrupted(run, BACKEND_STOPPED, job.attempt)
            except Exception:  # the next start recovers it
                log.exception("could not re-queue run %s on stop", job.run_id)
        if self._calibration is not None:
            if self._calibration.poll() is None:
                self._calibration.kill()
            self._calibration.wait(timeout=10)
        self.executor.shutdown()

    def recover(self) -> None:
        for run in self.store.running_runs():
            self.executor.kill_leftover(run)
            try:
                self._interrupted(run, BACKEND_STOPPED)
            except Exception:  # noqa: BLE001 - a busy database: the sweep does it later
                log.exception("could not recover run %s now", run["id"])

    def _interrupted(self, run: RunRow, cause: str, attempt: int | None = None) -> None:
        """A running run lost its worker through no fault of its own (the server
        stopped, its Ray worker or node died): re-queue it, or fail it the second time.
        `attempt`: the attempt that lost its worker (default: the run's current one);
        a run claimed again since, by another replica, is left alone."""
        attempt = run["interruptions"] if attempt is None else attempt
        if attempt >= MAX_REQUEUES:
            self._fail(run["id"], run["model_id"], run["version"],
                       INTERRUPTED.format(cause=cause), attempt)
            log.warning("run %s was interrupted again (%s); marked failed", run["id"], cause)
            return
        _remove_tmp(self.settings.artifacts_dir / run["model_id"], run["version"], attempt)
        if self.store.requeue_run(run["id"], f"re-queued: {cause} while this run was "
                                             "training; it trains again from the start", attempt):
            log.warning("run %s was interrupted (%s); re-queued", run["id"], cause)

    def wake(self) -> None:
        self._wake.set()

    # control -------------------------------------------------------------
    def kill(self, run_id: str) -> None:
        """Kill a run's worker, if it has one (cancel and delete use this)."""
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None:
            self.executor.kill(job)
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
        try:
            self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
            job = self.executor.launch(run, log_path)
        except (LaunchError, OSError) as exc:
            self._fail(run["id"], run["model_id"], run["version"], str(exc)[:500],
                       run["interruptions"])
            return True
        with self._lock:
            self._jobs[run["id"]] = job
        if job.pid:
            try:
                self.store.set_pid(run["id"], job.pid)
            except Exception as exc:  # noqa: BLE001 - the sweep finds the worker by its command line
                log.warning("could not record the pid of run %s: %s", run["id"], exc)
            log.info("run %s started in process %d", run["id"], job.pid)
        else:
            log.info("run %s started on the %s executor", run["id"], self.executor.name)
        return True

    def _reap(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            ended = self.executor.poll(job)
            if ended is None:
                continue
            with self._lock:
                del self._jobs[job.run_id]
            # only when the worker did not record an outcome itself
            if not ended.interrupted:
                self._fail(job.run_id, job.model_id, job.version, ended.reason, job.attempt)
                continue
            run = self.store.get_run(job.run_id)
            if run is not None and run["status"] == "running":
                self._interrupted(run, ended.reason, job.attempt)

    def _fail(self, run_id: str, model_id: str, version: str, reason: str, attempt: int) -> None:
        """Fail a run that is still `running` as `attempt`, freeing its partial artifact
        first (on a full disk that is the space the record needs); when the write
        fails the outcome is shown from memory and written later."""
        _remove_tmp(self.settings.artifacts_dir / model_id, version, attempt)
        try:
            self.store.finish_run(run_id, "failed", error=reason, only_from=("running",),
                                  attempt=attempt)
            run = self.store.get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - a full disk or a busy database
            if is_disk_full(exc) and DISK_FULL_NOTE not in reason:
                reason = f"{reason} ({DISK_FULL_NOTE})"[-500:]
            if run_id not in self._unrecorded:
                log.warning("could not record that run %s failed (%s); retrying", run_id, exc)
                self.store.show_unrecorded(run_id, {"status": "failed", "error": reason,
                                                    "completed_at": now()})
            self._unrecorded[run_id] = (model_id, version, reason, attempt)
            return
        self._unrecorded.pop(run_id, None)
        self.store.show_unrecorded(run_id, None)
        if run is None:  # the model was deleted meanwhile: leave none of its files
            self.remove_files(model_id, [run_id])

    def _record_pending(self) -> None:
        for run_id, (model_id, version, reason, attempt) in list(self._unrecorded.items()):
            self._fail(run_id, model_id, version, reason, attempt)

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
            if self.executor.alive(run):
                continue
            log.warning("run %s is running but no worker trains it", run["id"])
            self._interrupted(run, BACKEND_STOPPED)

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
                stderr=subprocess.DEVNULL, env=worker_env(), cwd=self.settings.data_dir,
                start_new_session=True)
        except OSError:
            log.warning("throughput calibration could not start; estimates use defaults")


def _remove_tmp(model_dir: Path, version: str, attempt: int) -> None:
    shutil.rmtree(unfinished_artifact_dir(model_dir, version, attempt), ignore_errors=True)

