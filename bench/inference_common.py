"""Shared parts of the inference benchmarks: an isolated domain, a real backend, a trained model."""

from __future__ import annotations

import os
import pathlib
import tempfile
import time
from collections.abc import Callable

import httpx
import numpy as np

from kairo_ros.testing.backend import Backend
from kairo_ros.testing.graph import wait_until
from kairo_ros.testing.processes import ChildProcess, ProcessGroup, claim_domain_id, isolated_ros_env

DOMAIN_ID, _CLAIM = claim_domain_id()
os.environ.update(isolated_ros_env(DOMAIN_ID))
WORK = pathlib.Path(tempfile.mkdtemp(prefix="kairo-bench-inference-"))
GROUP = ProcessGroup(log_dir=WORK / "logs", env=dict(os.environ))
ROBOT = "rob_bench1"


class BenchBackend(Backend):
    """A real kairo_backend on a free port with its own key, and the calls the benchmarks make."""

    def __init__(self) -> None:
        started = Backend.start(GROUP, WORK / "backend", workspace="bench")
        super().__init__(started.url, started.key, started.data_dir, started.process)
        self.api = self.client(timeout_s=30)

    def train(self, task: str, dataset_id: str, promote: bool = True, epochs: int = 2) -> tuple[str, str]:
        accepted = self.api.post("/v1/models/train", json={"dataset_id": dataset_id, "robot_id": ROBOT, "task": task,
                                                           "config": {"epochs": epochs}}).json()
        model_id, run_id = accepted["model_id"], accepted["run_id"]
        run: dict = {}

        def finished() -> bool:
            run.update(self.api.get(f"/v1/models/{model_id}/runs/{run_id}").json())
            return run["status"] in ("complete", "failed", "cancelled")

        wait_until(finished, 300, f"run {run_id}", period_s=0.2)
        assert run["status"] == "complete", run
        if promote:
            self.promote(model_id, run["model_version"])
        return model_id, run["model_version"]

    def promote(self, model_id: str, version: str) -> None:
        answer = self.api.post(f"/v1/models/{model_id}/promote", json={"version": version})
        assert answer.status_code == 200, answer.text

    def download(self, model_id: str, version: str) -> pathlib.Path:
        link = self.api.post(f"/v1/models/{model_id}/export", json={"format": "onnx", "version": version}).json()
        path = WORK / f"{model_id}_{version}.onnx"
        path.write_bytes(httpx.get(link["download_url"], timeout=30).content)
        return path


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> ChildProcess:
    return GROUP.start(name, argv, env=env)


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    values = np.array(samples_s) * 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out
