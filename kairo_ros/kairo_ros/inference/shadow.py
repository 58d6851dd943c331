"""Shadow mode: a candidate model run beside the serving one, measured, never published (no ROS here).

The prediction path hands each input it answered, with the outputs it
published, to `ShadowRunner.offer` after publishing them, so the active
model never waits for the candidate. Offers go through a bounded queue to a
thread of the runner's own; when the candidate falls behind, the queue is
full and the offer is counted as a shadow drop: the candidate loses samples,
the active path loses nothing.

Per graph output the runner measures the candidate against the active
model on the same input: mean and max absolute difference over every value,
and the share of values within the tolerance (the features' `tolerance`, in
output units, when the model carries one, else the node's `shadow_tolerance`
parameter). A candidate that raises, or answers with a non-finite value,
counts as an error for that input, which is not compared. `divergence` is
the largest mean absolute difference over the outputs.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kairo_ros.inference.model_session import ModelSession

log = logging.getLogger("kairo_ros.inference")

SHADOW_QUEUE = 64           # inputs waiting for the candidate before new ones are dropped
LATENCY_WINDOW = 2000       # candidate runs kept for the latency percentiles


@dataclass(frozen=True)
class OutputDivergence:
    mean_abs_diff: float
    max_abs_diff: float
    within_tolerance: float     # share of compared values within `tolerance`
    tolerance: float


@dataclass(frozen=True)
class ShadowStats:
    """The candidate as measured since it was loaded."""

    model_id: str
    version: str
    sha256: str
    deployment_id: str
    samples: int                # inputs the candidate ran on (errors included)
    errors: int                 # candidate failures and non-finite outputs
    dropped: int                # inputs skipped because the candidate was behind
    latency_p50_ms: float
    latency_p99_ms: float
    outputs: dict[str, OutputDivergence] = field(default_factory=dict)

    @property
    def divergence(self) -> float:
        return max((o.mean_abs_diff for o in self.outputs.values()), default=0.0)

    def to_json(self) -> dict[str, Any]:
        """As the heartbeat's `shadow` object."""
        return {
            "model_id": self.model_id, "version": self.version, "sha256": self.sha256,
            "deployment_id": self.deployment_id or None, "samples": self.samples, "errors": self.errors,
            "dropped": self.dropped, "latency_p50_ms": self.latency_p50_ms, "latency_p99_ms": self.latency_p99_ms,
            "outputs": {name: {"mean_abs_diff": o.mean_abs_diff, "max_abs_diff": o.max_abs_diff,
                               "within_tolerance": o.within_tolerance, "tolerance": o.tolerance}
                        for name, o in self.outputs.items()},
            "divergence": self.divergence,
        }


class _OutputMeasure:
    """Running sums of one output's differences."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.sum_abs = 0.0
        self.max_abs = 0.0
        self.within = 0
        self.values = 0

    def add(self, diff: np.ndarray) -> None:
        self.sum_abs += float(diff.sum(dtype=np.float64))
        self.max_abs = max(self.max_abs, float(diff.max())) if diff.size else self.max_abs
        self.within += int(np.count_nonzero(diff <= self.tolerance))
        self.values += diff.size

    def result(self) -> OutputDivergence:
        if not self.values:
            return OutputDivergence(0.0, 0.0, 1.0, self.tolerance)
        return OutputDivergence(self.sum_abs / self.values, self.max_abs, self.within / self.values, self.tolerance)


def shadow_tolerance(candidate: ModelSession, fallback: float) -> float:
    """The absolute tolerance outputs are compared with: the features' own, else `fallback`."""
    tolerance = candidate.features.tolerance
    return float(tolerance) if tolerance is not None and tolerance > 0 else fallback


class ShadowRunner:
    """Runs `candidate` on a thread of its own on what the serving model answered, and measures it."""

    def __init__(self, candidate: ModelSession, deployment_id: str, tolerance: float,
                 queue_size: int = SHADOW_QUEUE) -> None:
        self.candidate = candidate
        self.deployment_id = deployment_id
        self.tolerance = tolerance
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._measures = {name: _OutputMeasure(tolerance) for name in candidate.output_names}
        self._latencies_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._samples = 0
        self._errors = 0
        self._dropped = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kairo-inference-shadow", daemon=True)
        self._thread.start()

    @property
    def identity(self) -> Any:
        return self.candidate.identity

    # --- the prediction path's thread -------------------------------------------------------------------
    def offer(self, feeds: dict[str, np.ndarray], outputs: list[np.ndarray]) -> None:
        """One answered input and the serving model's outputs (copied: the caller reuses its buffers)."""
        if self._stopping.is_set():
            return
        try:
            self._queue.put_nowait(({name: value.copy() for name, value in feeds.items()},
                                    [output.copy() for output in outputs]))
        except queue.Full:
            with self._lock:
                self._dropped += 1

    # --- the runner's thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                feeds, active = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._stopping.is_set():
                return
            started = time.perf_counter()
            try:
                outputs = self.candidate.run(feeds)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; a failure is measured
                with self._lock:
                    self._samples += 1
                    self._errors += 1
                log.debug("shadow candidate failed on an input: %s", exc)
                continue
            latency_ms = (time.perf_counter() - started) * 1000.0
            finite = all(np.isfinite(output).all() for output in outputs)
            with self._lock:
                self._samples += 1
                self._latencies_ms.append(latency_ms)
                if not finite:
                    self._errors += 1
                    continue
                for name, candidate, reference in zip(self.candidate.output_names, outputs, active, strict=True):
                    self._measures[name].add(np.abs(candidate.astype(np.float64) - reference.astype(np.float64)))

    def stats(self) -> ShadowStats:
        identity = self.candidate.identity
        with self._lock:
            latencies = np.fromiter(self._latencies_ms, dtype=np.float64)
            return ShadowStats(
                model_id=identity.model_id, version=identity.version, sha256=identity.sha256,
                deployment_id=self.deployment_id, samples=self._samples, errors=self._errors, dropped=self._dropped,
                latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else 0.0,
                latency_p99_ms=float(np.percentile(latencies, 99)) if latencies.size else 0.0,
                outputs={name: measure.result() for name, measure in self._measures.items()})

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread after the input it runs now; what is still queued is not run. Idempotent."""
        self._stopping.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
