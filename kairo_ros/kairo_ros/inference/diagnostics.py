"""What the inference node reports on /diagnostics: counters, latency, the model serving.

`InferenceStats` is written by the prediction path (one lock taken once
per message) and read once a second by `diagnostic_status`,
which turns it into one diagnostic_msgs/DiagnosticStatus. The counters are
cumulative; the level reflects the last RECENT_WINDOW_S only, so one early
drop or the wait for a first promotion does not leave the node WARN forever.
The same window is the health a robot reports in its heartbeat
(`InferenceStats.health`), and `shadow_status` describes a shadowed candidate.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from kairo_ros.inference.guard import GUARD_REASONS
from kairo_ros.inference.model_session import ModelIdentity
from kairo_ros.inference.shadow import ShadowStats

LATENCY_WINDOW = 2000
RECENT_WINDOW_S = 10.0
# Drop reasons, as reported (one counter each).
DROP_WAITING = "waiting_for_inputs"
DROP_BAD_INPUT = "bad_input"
DROP_NO_MODEL = "no_model"
DROP_INFERENCE = "inference_failed"
DROP_LOST = "lost_in_transport"
DROP_GUARD = "guard"  # withheld by the safety guard; why is in the guard's own counters
DROP_REASONS = (DROP_WAITING, DROP_BAD_INPUT, DROP_NO_MODEL, DROP_INFERENCE, DROP_LOST, DROP_GUARD)


@dataclass(frozen=True)
class StatsSnapshot:
    inputs: int
    predictions: int
    dropped: dict[str, int]
    input_rate_hz: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    last_error: str
    last_error_code: str
    errors: int
    swaps: int
    rejected_models: int
    recent_dropped: int = 0     # in the last RECENT_WINDOW_S
    recent_errors: int = 0
    guard: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GUARD_REASONS, 0))
    recent_guard: int = 0       # times the guard acted in the last RECENT_WINDOW_S

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class RecentCount:
    """How many events happened in the last `window_s`, kept in one-second buckets."""

    def __init__(self, window_s: float = RECENT_WINDOW_S) -> None:
        self.window_s = window_s
        self._buckets: collections.deque[list[int]] = collections.deque()  # [second, count], oldest first

    def add(self, count: int = 1, now: float | None = None) -> None:
        second = int(time.monotonic() if now is None else now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])
            self._prune(second)

    def total(self, now: float | None = None) -> int:
        self._prune(int(time.monotonic() if now is None else now))
        return sum(count for _, count in self._buckets)

    def _prune(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            self._buckets.popleft()


class InferenceStats:
    """Thread-safe counters of the prediction path and of model loading."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._inputs = 0
        self._predictions = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._errors = 0
        self._swaps = 0
        self._rejected = 0
        self._last_error = ""
        self._last_error_code = ""
        self._rate_mark = (time.monotonic(), 0)
        self._recent_dropped = RecentCount()
        self._recent_errors = RecentCount()
        self._guard = dict.fromkeys(GUARD_REASONS, 0)
        self._recent_guard = RecentCount()
        self._recent_inputs = RecentCount()
        self._recent_predictions = RecentCount()
        self._recent_failures = RecentCount()  # inferences that raised

    def prediction_published(self, latency_s: float) -> None:
        """One primary input answered."""
        with self._lock:
            self._inputs += 1
            self._predictions += 1
            self._latencies_ms.append(latency_s * 1000.0)
            self._recent_inputs.add()
            self._recent_predictions.add()

    def input_dropped(self, reason: str) -> None:
        """One primary input not answered, for `reason`."""
        with self._lock:
            self._inputs += 1
            self._dropped[reason] += 1
            self._recent_dropped.add()
            self._recent_inputs.add()
            if reason == DROP_INFERENCE:
                self._recent_failures.add()

    def dropped(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._dropped[reason] += count
            self._recent_dropped.add(count)

    def guarded(self, reason: str, *, dropped_trigger: bool = False, dropped_other: bool = False) -> None:
        """The guard acted for `reason`; it withheld a trigger message's answer, or another input's value."""
        with self._lock:
            self._guard[reason] += 1
            self._recent_guard.add()
            if dropped_trigger:
                self._inputs += 1
                self._recent_inputs.add()
            if dropped_trigger or dropped_other:
                self._dropped[DROP_GUARD] += 1
                self._recent_dropped.add()

    def error(self, code: str, message: str) -> None:
        with self._lock:
            self._errors += 1
            self._recent_errors.add()
            self._last_error = message
            self._last_error_code = code

    def model_rejected(self, code: str, message: str) -> None:
        self.error(code, message)
        with self._lock:
            self._rejected += 1

    def swapped(self) -> None:
        with self._lock:
            self._swaps += 1

    def health(self) -> dict[str, float | int]:
        """The last RECENT_WINDOW_S as a heartbeat's `health`: primary inputs per second, latency of the
        answers (the last LATENCY_WINDOW), answers, drops (every reason, other inputs' included) and
        inferences that failed. Leaves the rate of `snapshot` alone."""
        with self._lock:
            now = time.monotonic()
            latencies = np.fromiter(self._latencies_ms, dtype=np.float64)
            return {
                "window_s": RECENT_WINDOW_S,
                "rate_hz": self._recent_inputs.total(now) / RECENT_WINDOW_S,
                "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else 0.0,
                "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies.size else 0.0,
                "processed": self._recent_predictions.total(now),
                "dropped": self._recent_dropped.total(now),
                "errors": self._recent_failures.total(now),
            }

    def snapshot(self) -> StatsSnapshot:
        """Counters now; the input rate is over the time since the previous snapshot."""
        with self._lock:
            now = time.monotonic()
            mark_time, mark_inputs = self._rate_mark
            elapsed = now - mark_time
            rate = (self._inputs - mark_inputs) / elapsed if elapsed > 0 else 0.0
            self._rate_mark = (now, self._inputs)
            latencies = np.fromiter(self._latencies_ms, dtype=np.float64)
            return StatsSnapshot(
                inputs=self._inputs, predictions=self._predictions, dropped=dict(self._dropped),
                input_rate_hz=rate,
                latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else None,
                latency_p99_ms=float(np.percentile(latencies, 99)) if latencies.size else None,
                last_error=self._last_error, last_error_code=self._last_error_code, errors=self._errors,
                swaps=self._swaps, rejected_models=self._rejected,
                recent_dropped=self._recent_dropped.total(now), recent_errors=self._recent_errors.total(now),
                guard=dict(self._guard), recent_guard=self._recent_guard.total(now),
            )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def diagnostic_status(node_name: str, state: str, identity: ModelIdentity | None, provider: str,
                      stats: StatsSnapshot) -> DiagnosticStatus:
    """One DiagnosticStatus: ERROR without a model; WARN after errors, drops or the guard acting in
    the last RECENT_WINDOW_S; else OK."""
    if identity is None:
        level, message = DiagnosticStatus.ERROR, f"{state}: no model serving"
        if stats.last_error:
            message += f" ({stats.last_error_code}: {stats.last_error})"
    elif stats.recent_errors or stats.recent_dropped or stats.recent_guard:
        level = DiagnosticStatus.WARN
        message = f"serving {identity.model_id} {identity.version}"
        if stats.recent_errors:
            message += f"; last error {stats.last_error_code}: {stats.last_error}"
        if stats.recent_dropped:
            message += f"; {stats.recent_dropped} messages dropped in the last {RECENT_WINDOW_S:.0f} s"
        if stats.recent_guard:
            acted = ", ".join(f"{reason} {count}" for reason, count in stats.guard.items() if count)
            message += (f"; the safety guard acted {stats.recent_guard} times in the last "
                        f"{RECENT_WINDOW_S:.0f} s (in all: {acted})")
    else:
        level, message = DiagnosticStatus.OK, f"serving {identity.model_id} {identity.version}"
    values = {
        "state": state,
        "model_id": identity.model_id if identity else "",
        "model_version": identity.version if identity else "",
        "sha256": identity.sha256[:12] if identity else "",
        "model_path": identity.path if identity else "",
        "execution_provider": provider,
        "latency_p50_ms": _ms(stats.latency_p50_ms),
        "latency_p99_ms": _ms(stats.latency_p99_ms),
        "input_rate_hz": f"{stats.input_rate_hz:.2f}",
        "inputs": str(stats.inputs),
        "predictions": str(stats.predictions),
        "dropped": str(stats.dropped_total),
        **{f"dropped_{reason}": str(count) for reason, count in stats.dropped.items()},
        "dropped_recently": str(stats.recent_dropped),
        **{f"guard_{reason}": str(count) for reason, count in stats.guard.items()},
        "guard_recently": str(stats.recent_guard),
        "errors": str(stats.errors),
        "errors_recently": str(stats.recent_errors),
        "models_rejected": str(stats.rejected_models),
        "swaps": str(stats.swaps),
        "last_error": f"{stats.last_error_code}: {stats.last_error}" if stats.last_error else "",
    }
    return DiagnosticStatus(level=level, name=f"{node_name}: model", message=message, hardware_id=node_name,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def shadow_status(node_name: str, stats: ShadowStats) -> DiagnosticStatus:
    """The shadowed candidate: WARN once it failed on an input or skipped one, else OK."""
    level = DiagnosticStatus.WARN if stats.errors or stats.dropped else DiagnosticStatus.OK
    message = (f"shadowing {stats.model_id} {stats.version}: divergence {stats.divergence:.4g} over "
               f"{stats.samples} inputs, {stats.errors} errors, {stats.dropped} skipped")
    values = {
        "model_id": stats.model_id,
        "candidate_version": stats.version,
        "candidate_sha256": stats.sha256[:12],
        "deployment_id": stats.deployment_id,
        "samples": str(stats.samples),
        "errors": str(stats.errors),
        "dropped": str(stats.dropped),
        "latency_p50_ms": f"{stats.latency_p50_ms:.3f}",
        "latency_p99_ms": f"{stats.latency_p99_ms:.3f}",
        "divergence": f"{stats.divergence:.6g}",
    }
    for name, output in stats.outputs.items():
        values.update({f"{name}.mean_abs_diff": f"{output.mean_abs_diff:.6g}",
                       f"{name}.max_abs_diff": f"{output.max_abs_diff:.6g}",
                       f"{name}.within_tolerance": f"{output.within_tolerance:.4f}",
                       f"{name}.tolerance": f"{output.tolerance:g}"})
    return DiagnosticStatus(level=level, name=f"{node_name}: shadow", message=message, hardware_id=node_name,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])
