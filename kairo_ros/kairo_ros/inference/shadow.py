"""Shadow mode: a candidate model run beside the serving one, measured, never published (no ROS here).

The prediction path hands each input it answered, with the outputs it
published, to `ShadowRunner.offer` after publishing them, so the active
model never waits for the candidate. Offers go through a bounded queue to a
thread of the runner's own (at a lower OS priority, polling every 5 ms, so
the serving thread pays an append, not a thread switch, per message); when
the candidate falls behind, the queue is full and the offer is counted as a
shadow drop: the candidate loses samples, the active path loses nothing.
The runner holds the GIL only to copy rows and, per batch of 64, to measure
them, so the serving thread rarely waits for it.

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
import contextlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kairo_ros.inference.model_session import ModelSession, output_shapes

log = logging.getLogger("kairo_ros.inference")

SHADOW_QUEUE = 64           # inputs waiting for the candidate before new ones are dropped
LATENCY_WINDOW = 2000       # candidate runs kept for the latency percentiles
MEASURE_ROWS = 64           # candidate answers measured together
SHADOW_POLL_S = 0.005       # the runner takes what was offered at least this often
SHADOW_NICE = 10            # the runner thread's nice value (the serving path keeps the process's)


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
    """One output's differences: each run's values land in a row of a buffer made once, and rows are
    measured a batch at a time (a few numpy calls per batch, not per input: the runner's thread holds
    the GIL, which the serving path needs too, as briefly as it can)."""

    def __init__(self, size: int, tolerance: float, rows: int) -> None:
        self.tolerance = tolerance
        self.candidate = np.zeros((rows, size), np.float32)
        self.active = np.zeros((rows, size), np.float32)
        self.sum_abs = 0.0
        self.max_abs = 0.0
        self.within = 0
        self.values = 0

    def measure(self, rows: int, finite: np.ndarray) -> None:
        """Add rows [0, rows) whose candidate answer was finite everywhere (`finite`, one bool per row)."""
        diff = np.abs(self.candidate[:rows][finite].astype(np.float64) - self.active[:rows][finite])
        if diff.size:
            self.sum_abs += float(diff.sum())
            self.max_abs = max(self.max_abs, float(diff.max()))
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
        self._queue_size = queue_size
        # A deque and an event rather than queue.Queue: an offer is an append and a flag, a few
        # hundred nanoseconds on the serving path.
        self._pending: collections.deque[tuple[dict[str, np.ndarray], list[np.ndarray]]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        shapes = output_shapes(candidate.features)
        self._measures = [_OutputMeasure(math.prod(shapes[name]), tolerance, MEASURE_ROWS)
                          for name in candidate.output_names]
        self._rows = 0                       # rows of the measures' buffers not measured yet
        self._finite = np.ones(MEASURE_ROWS, bool)
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
        if len(self._pending) >= self._queue_size:
            self._dropped += 1  # only this thread writes it
            return
        self._pending.append(({name: value.copy() for name, value in feeds.items()},
                              [output.copy() for output in outputs]))
        # The runner looks every SHADOW_POLL_S by itself; woken only when half the queue is taken, so
        # that a thread switch per message is not a cost the serving process pays.
        if len(self._pending) >= self._queue_size // 2 and not self._wake.is_set():
            self._wake.set()

    # --- the runner's thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        _lower_this_threads_priority()
        while not self._stopping.is_set():
            self._wake.clear()
            while self._pending and not self._stopping.is_set():
                self._run_one(*self._pending.popleft())
                if self._rows == MEASURE_ROWS:
                    with self._lock:
                        self._measure()
            with self._lock:
                self._measure()
            self._wake.wait(SHADOW_POLL_S)

    def _run_one(self, feeds: dict[str, np.ndarray], active: list[np.ndarray]) -> None:
        started = time.perf_counter()
        try:
            outputs = self.candidate.run(feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; a failure is measured
            with self._lock:
                self._samples += 1
                self._errors += 1
            log.debug("shadow candidate failed on an input: %s", exc)
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        with self._lock:
            row = self._rows
            for measure, candidate, reference in zip(self._measures, outputs, active, strict=True):
                measure.candidate[row] = candidate.reshape(-1)
                measure.active[row] = reference.reshape(-1)
            self._rows += 1
            self._samples += 1
            self._latencies_ms.append(latency_ms)

    def _measure(self) -> None:
        """Measure the rows gathered so far (under the lock); a row with a non-finite value is an error."""
        rows = self._rows
        if not rows:
            return
        finite = self._finite[:rows]
        finite[:] = True
        for measure in self._measures:
            finite &= np.isfinite(measure.candidate[:rows]).all(axis=1)
        for measure in self._measures:
            measure.measure(rows, finite)
        self._errors += rows - int(np.count_nonzero(finite))
        self._rows = 0

    def stats(self) -> ShadowStats:
        identity = self.candidate.identity
        with self._lock:
            self._measure()
            latencies = np.fromiter(self._latencies_ms, dtype=np.float64)
            return ShadowStats(
                model_id=identity.model_id, version=identity.version, sha256=identity.sha256,
                deployment_id=self.deployment_id, samples=self._samples, errors=self._errors, dropped=self._dropped,
                latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else 0.0,
                latency_p99_ms=float(np.percentile(latencies, 99)) if latencies.size else 0.0,
                outputs={name: measure.result() for name, measure in zip(self.candidate.output_names,
                                                                          self._measures, strict=True)})

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread after the input it runs now; what is still queued is not run. Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)


def _lower_this_threads_priority() -> None:
    """Give the calling thread a nice value of SHADOW_NICE: under CPU contention the serving path's
    threads run first. Linux applies setpriority to one thread given its id; elsewhere nothing happens."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)
