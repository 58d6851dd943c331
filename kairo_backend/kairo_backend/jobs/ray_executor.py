"""Runs as Ray tasks: `kairo-backend serve --executor ray --ray-address HOST:PORT`.

The server connects to the Ray cluster as a driver; each claimed run is one
task (named "kairo-run <run id>", shown as the worker's process title) that
calls the same `kairo_backend.training.worker.run` a local worker process
runs, so progress, logs, artifacts and outcomes reach the data dir the same
way. That needs the data dir at the same path on every Ray node (a network
file system past one machine; docs/deploy.md).

A task declares `ray_num_cpus` CPUs and `ray_num_gpus` GPUs (by default one
when the cluster has GPUs). Ray retries nothing (max_retries=0): a task whose
worker or node dies ends the run's job, and the dispatcher re-queues the run
once, as after a stop of the backend. Cancel force-cancels the task (its
worker process is killed). The tasks are the server's: when the server dies,
Ray ends them, so a restarted server re-queues its runs without a second
copy training.

Only this module imports ray, and only the dispatcher of a server started
with the Ray executor imports this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kairo_backend.core.config import Settings
from kairo_backend.jobs.executor import Ended, Executor, Job, LaunchError, exit_reason
from kairo_backend.store.rows import RunRow

log = logging.getLogger("kairo_backend.jobs")

# The interruption cause a run's log and error show.
RAY_WORKER_DIED = "its Ray worker or node died"
# How long the server waits for the Ray head to answer at start.
CONNECT_TIMEOUT_S = 10.0
# How long a stopping server waits for a cancelled task to end.
STOP_WAIT_S = 10.0
TASK_PREFIX = "kairo-run "


def _train_task(data_dir: str, database: str, run_id: str, attempt: int, threads: int,
                log_path: str) -> int:
    """The Ray task: the worker's run() on the server's database, its output appended
    to the run's log file."""
    from kairo_backend.training import worker

    with open(log_path, "a", buffering=1, encoding="utf-8", errors="replace") as out, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        print(f"ray task in process {os.getpid()} on {socket.gethostname()}")
        return worker.run(Path(data_dir), run_id, attempt, None, threads, database)


@dataclass
class _RayJob(Job):
    ref: Any = None  # the task's ray.ObjectRef


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, settings: Settings) -> None:
        address = check_address(settings.ray_address)
        try:
            import ray
        except ImportError as exc:
            raise ValueError("--executor ray needs the 'ray' package: pip install "
                             "'kairo-backend[scale]' (make setup installs it)") from exc
        try:
            ray.init(address=address, namespace="kairo", logging_level=logging.WARNING,
                     log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - any failure to connect, said plainly
            raise ValueError(f"could not join the Ray cluster at {address}: {exc}") from exc
        self._ray = ray
        self.settings = settings
        gpus = settings.ray_num_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        self.num_cpus = settings.ray_num_cpus
        self.num_gpus = gpus
        self._task = ray.remote(max_retries=0, num_cpus=self.num_cpus,
                                num_gpus=self.num_gpus)(_train_task)
        log.info("training on the Ray cluster at %s: %g CPU and %g GPU per run", address,
                 self.num_cpus, self.num_gpus)

    def launch(self, run: RunRow, log_path: Path) -> Job:
        try:
            ref = self._task.options(name=TASK_PREFIX + run["id"]).remote(
                str(self.settings.data_dir), str(self.settings.database), run["id"],
                run["interruptions"], self.settings.torch_threads, str(log_path))
        except Exception as exc:  # noqa: BLE001 - the cluster refused the task
            raise LaunchError(f"could not submit the Ray task: {exc}") from exc
        return _RayJob(run["id"], run["model_id"], run["version"], log_path,
                       run["interruptions"], ref=ref)

    def poll(self, job: Job) -> Ended | None:
        assert isinstance(job, _RayJob)
        ray = self._ray
        ready, _ = ray.wait([job.ref], timeout=0)
        if not ready:
            return None
        try:
            returncode = ray.get(job.ref)
        except ray.exceptions.TaskCancelledError:
            return Ended("its Ray task was cancelled")
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError):
            return Ended(RAY_WORKER_DIED, interrupted=True)
        except ray.exceptions.OutOfMemoryError as exc:
            return Ended(f"Ray killed its worker for lack of memory: {_first_line(exc)}")
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return Ended(f"its Ray task failed: {type(cause).__name__}: "
                         f"{_first_line(cause)}"[:500])
        except ray.exceptions.RayError as exc:
            return Ended(f"its Ray task failed: {_first_line(exc)}"[:500])
        return Ended(exit_reason(int(returncode), job.log_path))

    def kill(self, job: Job) -> None:
        assert isinstance(job, _RayJob)
        try:
            self._ray.cancel(job.ref, force=True)  # kills the worker process running it
        except Exception as exc:  # noqa: BLE001 - already ended, or the cluster is gone
            log.warning("could not cancel the Ray task of run %s: %s", job.run_id, exc)

    def stop(self, job: Job) -> None:
        assert isinstance(job, _RayJob)
        self.kill(job)
        self._ray.wait([job.ref], timeout=STOP_WAIT_S)

    def alive(self, run: RunRow) -> bool:
        # This server tracks every task it started, and Ray ends the tasks of a server
        # that died: a running run it does not track has no task left.
        return False

    def kill_leftover(self, run: RunRow) -> None:
        pass  # Ray ended the tasks of the server that left this run running

    def shutdown(self) -> None:
        self._ray.shutdown()


def check_address(address: str | None) -> str:
    """The Ray head's address, once something answers there; else a ValueError that
    says what to do (ray.init would retry for minutes). The CLI calls it before it
    loads the app, so that a wrong setting fails fast."""
    if not address:
        raise ValueError("--executor ray needs the Ray cluster's address: --ray-address "
                         "HOST:PORT (its head's port, 6379 unless 'ray start --head "
                         "--port' said otherwise) or KAIRO_RAY_ADDRESS; 'auto' finds a "
                         "head started on this machine")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return address  # "auto" or a ray:// client address: left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ValueError(f"no Ray head answers at {address} ({exc}): start one with "
                         "'ray start --head --port PORT', or fix --ray-address / "
                         "KAIRO_RAY_ADDRESS") from exc
    return address


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__
