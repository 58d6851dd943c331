"""The Ray executor: a real Ray head (2 CPUs, loopback, its own temporary
directory) and a real `kairo-backend serve --executor ray` on it, once per
database engine, driven through the HTTP API: a run trains as a Ray task, a
cancel ends its task, a run whose Ray worker is killed is re-queued once and
completes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort
import pytest
from ray_cluster import RAY_ENV, running_ray_head

from conftest import ENGINES, Server, cli, engine_data_dir, wait_run

TASK_TITLE = b"ray::kairo-run "  # the Ray worker's process title while it trains a run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    with running_ray_head() as address:
        yield address


@pytest.fixture(scope="module", params=ENGINES)
def ray_server(request: pytest.FixtureRequest, ray_head: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = engine_data_dir(request, tmp_path_factory, "kairo-ray", request.param)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in RAY_ENV.items():
            mp.setenv(name, value)
        srv = Server(data_dir, ["--executor", "ray", "--ray-address", ray_head]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ray_api(ray_server: Server) -> Iterator[httpx.Client]:
    key = cli(ray_server.data_dir, "keys", "create", "--workspace", "rayws")
    with ray_server.client(key) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(ray_server: Server) -> str:
    return cli(ray_server.data_dir, "datasets", "create-demo", "navigation", "--workspace",
               "rayws", "--samples", "600", "--seed", "3")


def _train(api: httpx.Client, dataset: str, robot: str,
           config: dict[str, Any]) -> dict[str, Any]:
    """A run on a robot's own model (one model per robot and task)."""
    r = api.post("/v1/models/train", json={"dataset_id": dataset, "robot_id": robot,
                                           "task": "navigation", "config": config})
    assert r.status_code in (200, 201, 202), r.text
    out: dict[str, Any] = r.json()
    return out


def _get(api: httpx.Client, run: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = api.get(f"/v1/models/{run['model_id']}/runs/{run['run_id']}").json()
    return out


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _wait_training(api: httpx.Client, run: dict[str, Any]) -> None:
    """Until the run has trained an epoch (so its Ray task is under way)."""
    def training() -> bool:
        now = _get(api, run)
        return now["status"] == "running" and bool(now.get("progress"))

    assert _wait(training, timeout=120), _get(api, run)


def _task_pids(run_id: str) -> list[int]:
    """The Ray worker processes running the run's task, found by their process title."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(
                    TASK_TITLE + run_id.encode()):
                pids.append(int(pid))
    return pids


def test_a_run_trains_as_a_ray_task(ray_server: Server, ray_api: httpx.Client,
                                    dataset: str) -> None:
    run = _train(ray_api, dataset, "rob_trains", {"epochs": 3})
    done = wait_run(ray_api, run["model_id"], run["run_id"], timeout=180)
    assert done["status"] == "complete", done
    assert done["metrics"]["epochs_run"] == 3 and done["metrics"]["val_accuracy"] > 0, done
    assert any("epoch 3/3" in line for line in done["logs"]), done["logs"]
    log_file = ray_server.data_dir / "logs" / f"{run['run_id']}.log"
    assert "ray task in process" in log_file.read_text(), log_file.read_text()
    link = ray_api.post(f"/v1/models/{run['model_id']}/export",
                        json={"format": "onnx", "version": done["model_version"]})
    assert link.status_code == 200, link.text
    onnx = httpx.get(link.json()["download_url"], timeout=30)
    assert onnx.status_code == 200
    session = ort.InferenceSession(onnx.content, providers=["CPUExecutionProvider"])
    assert session.get_inputs(), "the downloaded model has no inputs"


def test_cancel_ends_the_ray_task(ray_api: httpx.Client, dataset: str) -> None:
    run = _train(ray_api, dataset, "rob_cancels", {"epochs": 1000, "batch_size": 4})
    _wait_training(ray_api, run)
    pids = _wait(lambda: _task_pids(run["run_id"]), timeout=30)
    assert pids, "no Ray worker process runs the task"
    r = ray_api.post(f"/v1/models/{run['model_id']}/runs/{run['run_id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert _wait(lambda: not _task_pids(run["run_id"]), timeout=30), \
        "the Ray task still runs after the cancel"
    # the next run trains once the dispatcher has reaped the cancelled task (one worker)
    following = _train(ray_api, dataset, "rob_cancels", {"epochs": 1})
    done = wait_run(ray_api, following["model_id"], following["run_id"], timeout=180)
    assert done["status"] == "complete", done
    after = _get(ray_api, run)
    assert after["status"] == "cancelled", after
    assert not any("re-queued" in line for line in after["logs"]), after["logs"]


def test_a_run_whose_ray_worker_dies_is_requeued_once(ray_api: httpx.Client,
                                                      dataset: str) -> None:
    run = _train(ray_api, dataset, "rob_dies", {"epochs": 60, "batch_size": 16})
    _wait_training(ray_api, run)
    pids = _wait(lambda: _task_pids(run["run_id"]), timeout=30)
    assert pids, "no Ray worker process runs the task"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    def requeued() -> bool:
        return any("re-queued: its Ray worker or node died" in line
                   for line in _get(ray_api, run)["logs"])

    assert _wait(requeued, timeout=60), _get(ray_api, run)
    done = wait_run(ray_api, run["model_id"], run["run_id"], timeout=180)
    assert done["status"] == "complete", done
    assert done["metrics"]["epochs_run"] == 60, done
    assert sum("re-queued" in line for line in done["logs"]) == 1, done["logs"]
    versions = ray_api.get(f"/v1/models/{run['model_id']}").json()["versions"]
    assert [v["version"] for v in versions] == [done["model_version"]], versions


@pytest.mark.parametrize("args, says", [
    (["--executor", "ray"], "--ray-address"),
    (["--executor", "ray", "--ray-address", "127.0.0.1:{port}"], "no Ray head answers"),
])
def test_bad_ray_settings_say_what_to_do(tmp_path: Path, args: list[str], says: str) -> None:
    port = str(_free_port())  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k not in ("KAIRO_EXECUTOR",
                                                            "KAIRO_RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-m", "kairo_backend", "serve", "--port", "0",
                          "--data-dir", str(tmp_path),
                          *[a.format(port=port) for a in args]],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode == 2, out
    assert says in out.stderr and "Traceback" not in out.stderr + out.stdout, out.stderr
