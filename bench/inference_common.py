"""Shared parts of the inference benchmarks: an isolated domain, a real backend, a trained model."""

from __future__ import annotations

import os
import pathlib
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from kairo_interfaces.msg import Prediction
from kairo_ros.testing.backend import Backend
from kairo_ros.testing.graph import SpinningNode, wait_until
from kairo_ros.testing.processes import ChildProcess, ProcessGroup, claim_domain_id, isolated_ros_env

DOMAIN_ID, _CLAIM = claim_domain_id()
os.environ.update(isolated_ros_env(DOMAIN_ID))
WORK = pathlib.Path(tempfile.mkdtemp(prefix="kairo-bench-inference-"))
GROUP = ProcessGroup(log_dir=WORK / "logs", env=dict(os.environ))
ROBOT = "rob_bench1"
QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


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


def model_file(given: pathlib.Path | None, task: str, samples: int, epochs: int = 2) -> pathlib.Path:
    """The ONNX file to serve: `given` (a --model from an earlier run), else one the real backend trains
    on its demo data, which is stopped once the file is downloaded (its CPU goes to the measurement)."""
    if given is not None:
        return given
    backend = BenchBackend()
    dataset = backend.cli("datasets", "create-demo", task, "--workspace", "bench", "--samples", str(samples))
    model_id, version = backend.train(task, dataset, epochs=epochs)
    path = backend.download(model_id, version)
    backend.process.stop()
    return path


def stamped_frames(pixels: np.ndarray) -> tuple[Image, Callable[[int], Image]]:
    """One rgb8 frame of `pixels` [H, W, 3] uint8, and a maker of stamped copies that share its bytes."""
    height, width = pixels.shape[:2]
    frame = Image(width=width, height=height, encoding="rgb8", step=width * 3, data=pixels.tobytes())

    def make(index: int) -> Image:
        msg = Image(width=width, height=height, encoding="rgb8", step=frame.step, data=frame.data)
        msg.header.stamp.sec = index
        return msg
    return frame, make


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> ChildProcess:
    return GROUP.start(name, argv, env=env)


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far, every thread summed (schedstat: nanoseconds, not 10 ms ticks).

    Unlike a wall-clock rate, this barely moves when other work shares the
    machine, so it shows a small per-message cost that DDS timing noise hides.
    """
    total_ns = 0
    for stat in pathlib.Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total_ns += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between the listing and the read
    return total_ns * 1e-9


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


class Loop:
    """Publishes messages on one topic and counts the answers on another (stamps name the messages)."""

    def __init__(self, ros: SpinningNode, out_topic: str, in_topic: str, answer_type: type,
                 make: Callable[[int], Any], timeout_s: float = 5.0) -> None:
        self.make = make
        self.timeout_s = timeout_s  # for one answer (a node under valgrind needs more)
        self.publisher = ros.node.create_publisher(type(make(0)), out_topic, QOS)
        self.answered = 0
        self.last_stamp = -1
        self.cond = threading.Condition()
        ros.node.create_subscription(answer_type, in_topic, self._on_answer, QOS)
        wait_until(lambda: self.publisher.get_subscription_count() > 0, 30, f"a subscriber on {out_topic}")

    def _on_answer(self, msg: Any) -> None:
        with self.cond:
            self.answered += 1
            self.last_stamp = msg.header.stamp.sec
            self.cond.notify_all()

    def send(self, index: int) -> None:
        self.publisher.publish(self.make(index))

    def ping(self, index: int) -> float:
        started = time.perf_counter()
        with self.cond:
            self.send(index)
            if not self.cond.wait_for(lambda: self.last_stamp == index, timeout=self.timeout_s):
                raise TimeoutError(f"no answer to message {index}")
        return time.perf_counter() - started

    def flood(self, count: int, window: int, first: int) -> tuple[float, int]:
        """Send `count` messages with at most `window` unanswered; (rate Hz, dropped)."""
        start_answered = self.answered
        started = time.perf_counter()
        for i in range(count):
            with self.cond:
                if not self.cond.wait_for(lambda i=i: i - (self.answered - start_answered) < window,
                                          timeout=self.timeout_s):
                    break
            self.send(first + i)
        with self.cond:
            self.cond.wait_for(lambda: self.answered - start_answered >= count, timeout=self.timeout_s)
        elapsed = time.perf_counter() - started
        received = self.answered - start_answered
        return received / elapsed, count - received


class NodeLatency:
    """The node's own latency (input received -> published, Prediction.latency) of every answer on a topic."""

    def __init__(self, ros: SpinningNode, topic: str) -> None:
        self.samples_s: list[float] = []
        ros.node.create_subscription(Prediction, topic, self._on_prediction, QOS)

    def _on_prediction(self, msg: Prediction) -> None:
        self.samples_s.append(msg.latency.sec + msg.latency.nanosec * 1e-9)

    def take(self) -> list[float]:
        taken, self.samples_s = self.samples_s, []
        return taken
