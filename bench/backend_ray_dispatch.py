"""A run on the Ray executor vs the local one: dispatch overhead and epoch time.

Two real servers, one per executor (`--executor local`, `--executor ray` on a
local Ray head with 2 CPUs, loopback only), each with its own data dir and
the same demo datasets, trained alternately so that the load of other
processes on a shared machine hits both alike:

- dispatch: the same 1-epoch run, POST /v1/models/train until the API shows it
  complete; the run's own work is tiny, so the time is the executor's
  overhead (claim, worker start, imports, export, reaping). The first run on
  each server (a fresh worker, imports cold) is shown apart from the median
  of the next ones (on Ray a worker process is reused with torch imported).
- epoch time: the same multi-epoch run, the median of the epoch times the
  worker logs ("epoch i/n ... (0.31s)"); the ratio is the median over
  interleaved pairs of runs of (ray / local); goal on Ray <= 1.15x local.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from backend_common import Backend, cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kairo_backend" / "tests"))
from ray_cluster import RAY_ENV, running_ray_head  # noqa: E402

DISPATCH_RUNS = 6  # per executor, the first one apart
EPOCH_RUNS = 5  # per executor
EPOCHS = 5
EPOCH_LINE = re.compile(r"^\S+ epoch \d+/\d+ .*\((\d+\.\d+)s\)$")


class Side:
    """One server and its client, key and datasets."""

    def __init__(self, name: str, backend: Backend) -> None:
        self.name = name
        self.backend = backend
        key = cli(backend.data_dir, "keys", "create", "--workspace", "bench")
        self.datasets = {
            "small": cli(backend.data_dir, "datasets", "create-demo", "navigation",
                         "--workspace", "bench", "--samples", "300", "--seed", "1"),
            "epochs": cli(backend.data_dir, "datasets", "create-demo", "manipulation",
                          "--workspace", "bench", "--samples", "8000", "--seed", "1")}
        self.client = httpx.Client(base_url=backend.url, timeout=30,
                                   headers={"Authorization": f"Bearer {key}"})

    def train(self, dataset: str, task: str, epochs: int) -> tuple[float, dict[str, Any]]:
        """POST train, wait until complete: (seconds, the run)."""
        t = time.perf_counter()
        r = self.client.post("/v1/models/train", json={
            "dataset_id": self.datasets[dataset], "robot_id": "rob_bench", "task": task,
            "config": {"epochs": epochs, "batch_size": 64}})
        assert r.status_code == 202, r.text
        body = r.json()
        while True:
            run: dict[str, Any] = self.client.get(
                f"/v1/models/{body['model_id']}/runs/{body['run_id']}").json()
            if run["status"] in ("complete", "failed", "cancelled"):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - t
        assert run["status"] == "complete", run
        return elapsed, run


def wait_calibrated(data_dir: Path) -> None:
    """Until the server's one-off throughput calibration process has ended."""
    needle = str(data_dir).encode()
    while True:
        busy = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                busy = busy or (b"kairo_backend.training.calibrate" in cmd and needle in cmd)
        if not busy:
            return
        time.sleep(0.2)


def epoch_seconds(run: dict[str, Any]) -> list[float]:
    return [float(m.group(1)) for line in run["logs"] if (m := EPOCH_LINE.match(line))]


def main() -> int:
    for name, value in RAY_ENV.items():
        os.environ[name] = value
    with running_ray_head() as address, Backend("--executor", "local") as lb, \
            Backend("--executor", "ray", "--ray-address", address) as rb:
        sides = [Side("local", lb), Side("ray", rb)]
        for side in sides:
            wait_calibrated(side.backend.data_dir)
        dispatch: dict[str, list[float]] = {s.name: [] for s in sides}
        for _ in range(DISPATCH_RUNS):
            for side in sides:
                dispatch[side.name].append(side.train("small", "navigation", 1)[0])
        epochs: dict[str, list[float]] = {s.name: [] for s in sides}
        pairs: list[float] = []  # per pair of runs: ray's median epoch / local's
        for _ in range(EPOCH_RUNS):
            medians = {}
            for side in sides:
                times = epoch_seconds(side.train("epochs", "manipulation", EPOCHS)[1])
                epochs[side.name] += times
                medians[side.name] = statistics.median(times)
            pairs.append(medians["ray"] / medians["local"])
        for side in sides:
            side.client.close()
    first = {k: v[0] for k, v in dispatch.items()}
    warm = {k: statistics.median(v[1:]) for k, v in dispatch.items()}
    epoch = {k: statistics.median(v) for k, v in epochs.items()}
    print("a 1-epoch run (navigation, 300 samples), POST train until complete:")
    for k in dispatch:
        print(f"  {k:<5} first {first[k]:6.2f} s  then median {warm[k]:6.2f} s "
              f"(of {len(dispatch[k]) - 1})")
    print(f"dispatch ratio ray/local: first run {first['ray'] / first['local']:.2f}x, "
          f"next runs {warm['ray'] / warm['local']:.2f}x")
    print(f"epoch time ({EPOCHS}-epoch runs, manipulation, 8000 samples, batch 64), "
          "median of the worker's epoch times:")
    for k in epochs:
        print(f"  {k:<5} {epoch[k] * 1000:7.1f} ms (of {len(epochs[k])} epochs)")
    print(f"ratio of the medians {epoch['ray'] / epoch['local']:.3f}x")
    print(f"ratio {statistics.median(pairs):.3f}x epoch time ray/local (median of "
          f"{len(pairs)} interleaved pairs of runs; goal <= 1.15x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
