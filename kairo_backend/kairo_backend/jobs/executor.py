"""Where a claimed run trains: one interface, two executors.

`LocalExecutor` (the default) starts `python -m kairo_backend.training.worker`
per run on this machine; `RayExecutor` (kairo_backend.jobs.ray_executor,
`--executor ray`) runs the same worker function as a Ray task on a cluster.
Either way the worker writes its progress and outcome to the database
itself; the dispatcher claims runs, polls jobs and records what a worker
could not (a crash, a kill, a lost node).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kairo_backend.core.config import Settings
from kairo_backend.store.rows import RunRow


class LaunchError(Exception):
    """A run's job could not start; the message says why (the run fails with it)."""


@dataclass
class Job:
    """A run being trained by an executor."""

    run_id: str
    model_id: str
    version: str
    log_path: Path
    attempt: int  # the run's interruptions when claimed: the fence of the job's writes
    pid: int = 0  # the worker's process id, when this machine runs it


@dataclass(frozen=True)
class Ended:
    """How a job ended, for a run the worker left `running`."""

    reason: str
    # the executor lost the job (a Ray worker or node died), not the run's own failure:
    # the run is re-queued once, as after a stop of the backend
    interrupted: bool = False


class Executor(ABC):
    name: str

    @abstractmethod
    def launch(self, run: RunRow, log_path: Path) -> Job:
        """Start training a claimed run; LaunchError when it cannot start."""

    @abstractmethod
    def poll(self, job: Job) -> Ended | None:
        """None while the job trains; how it ended once it has (and its resources freed)."""

    @abstractmethod
    def kill(self, job: Job) -> None:
        """Stop the job now, without waiting (cancel and delete use this)."""

    @abstractmethod
    def stop(self, job: Job) -> None:
        """Stop the job and wait until it is gone (the server is stopping)."""

    @abstractmethod
    def alive(self, run: RunRow) -> bool:
        """Whether a run this server does not track is still trained somewhere."""

    @abstractmethod
    def kill_leftover(self, run: RunRow) -> None:
        """A run `running` when the server starts: end what a previous server left training."""

    @abstractmethod
    def shutdown(self) -> None:
        """The server stops: release the executor's connections."""


def exit_reason(returncode: int, log_path: Path) -> str:
    """Why a worker that left its run `running` ended: its exit and its log's last line."""
    reason = (f"worker process was killed by signal {-returncode}" if returncode < 0
              else f"worker process exited with status {returncode}")
    tail = _tail(log_path)
    return f"{reason}: {tail}"[:500] if tail else reason


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "ray":
        from kairo_backend.jobs.ray_executor import RayExecutor  # imports ray: only here

        return RayExecutor(settings)
    return LocalExecutor(settings)


@dataclass
class _LocalJob(Job):
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None


class LocalExecutor(Executor):
    """Each run in its own worker process on this machine, dying with the server."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def launch(self, run: RunRow, log_path: Path) -> Job:
        cmd = [sys.executable, "-m", "kairo_backend.training.worker",
               "--data-dir", str(self.settings.data_dir), "--run-id", run["id"],
               "--attempt", str(run["interruptions"]),
               "--parent-pid", str(os.getpid()), "--threads", str(self.settings.torch_threads)]
        try:
            log_file = log_path.open("ab")
        except OSError as exc:
            raise LaunchError(f"could not open the run's log file: {exc}") from exc
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, env=worker_env(),
                                    cwd=self.settings.data_dir, start_new_session=True)
        except OSError as exc:
            log_file.close()
            raise LaunchError(f"could not start worker: {exc}") from exc
        return _LocalJob(run["id"], run["model_id"], run["version"], log_path,
                         run["interruptions"], proc.pid, proc, log_file)

    def poll(self, job: Job) -> Ended | None:
        assert isinstance(job, _LocalJob) and job.proc is not None and job.log_file is not None
        rc = job.proc.poll()
        if rc is None:
            return None
        job.log_file.close()
        return Ended(exit_reason(rc, job.log_path))

    def kill(self, job: Job) -> None:
        assert isinstance(job, _LocalJob) and job.proc is not None
        if job.proc.poll() is None:
            job.proc.kill()

    def stop(self, job: Job) -> None:
        assert isinstance(job, _LocalJob) and job.proc is not None and job.log_file is not None
        job.proc.kill()
        job.proc.wait(timeout=10)
        job.log_file.close()

    def alive(self, run: RunRow) -> bool:
        return _worker_alive(run.get("pid") or 0, run["id"])

    def kill_leftover(self, run: RunRow) -> None:
        pid = run.get("pid") or 0
        if pid and _is_our_worker(pid, run["id"]):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def shutdown(self) -> None:
        pass  # each worker process was stopped with its job


def worker_env() -> dict[str, str]:
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


def _tail(path: Path, limit: int = 300) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""
