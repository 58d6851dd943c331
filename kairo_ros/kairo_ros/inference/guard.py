"""The safety guard of the prediction path: what a robot is never sent (no ROS here).

A learned model answers whatever it is fed: a NaN joint position gives NaN
commands, a reading of 1e6 a command of a million. So between the readers
and the model, and between the model and the writers:

- an input with a non-finite value is never fed to the model (dropped,
  `non_finite_input`); one outside its envelope (the range of the training
  data, widened by `envelope_margin` of its width) is dropped, clamped or
  passed by `out_of_envelope` (`out_of_envelope_input`);
- an output with a non-finite value is never published (`non_finite_output`);
  one outside its limits (the output's envelope widened the same way, or the
  operator's `output_limits`) is clamped to them (`clamped_output`).

A model without an envelope (exported before envelopes were recorded) is
guarded against non-finite values only, and by the `output_limits` given.
The check of a healthy message, the only case on a healthy robot, is what
every message pays, so it is kept to one comparison per value: a few values
(joints, a target, a command) are compared as Python floats with the bounds
(`low <= v <= high`, false for a NaN, and for an infinity since the bounds
are finite), because each numpy ufunc call costs about 3,000 instructions
before its first value, 4 of them more than the guard's budget (2 % of the
data path, bench/inference_guard_cost.py). Larger inputs (scans, images) are
clamped into a buffer made once (`fmin`/`fmax`, which turn a NaN into a
bound) and compared bytewise with the values. Only a message that fails is
looked at further.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from kairo_features.schema import FeatureEntry, Features
from kairo_ros.inference.errors import ConfigError
from kairo_ros.inference.model_session import output_shapes

# What the guard counts, one counter each (diagnostics `guard_<reason>`).
NON_FINITE_INPUT = "non_finite_input"
OUT_OF_ENVELOPE_INPUT = "out_of_envelope_input"
NON_FINITE_OUTPUT = "non_finite_output"
CLAMPED_OUTPUT = "clamped_output"
STALE_INPUT = "stale_input"
GUARD_REASONS = (NON_FINITE_INPUT, OUT_OF_ENVELOPE_INPUT, NON_FINITE_OUTPUT, CLAMPED_OUTPUT, STALE_INPUT)

OUT_OF_ENVELOPE_CHOICES = ("drop", "clamp", "pass")
# stale_input_timeout_s: this value means the task's default, 0 means off.
STALE_TASK_DEFAULT = -1.0
STALE_DEFAULTS_S = {"navigation": 0.5}
# Tasks whose safe output is all zeros (a zero Twist stops a mobile base). A position-controlled arm
# holds its last setpoint, and zeros would be a move, so the others publish nothing when stale.
ZERO_SAFE_OUTPUT_TASKS = frozenset({"navigation"})
# For the benchmark only: KAIRO_INFERENCE_GUARD=off serves without the guard, to measure what it costs.
GUARD_ENV = "KAIRO_INFERENCE_GUARD"

_LIMIT = re.compile(r"^([a-z][a-z0-9_]*)(?:\[(\d+)\])?$")


def guard_enabled() -> bool:
    return os.environ.get(GUARD_ENV, "").strip().lower() != "off"


def stale_timeout_s(value: float, task: str) -> float:
    """The stale-input timeout in effect: the task's default for -1, 0 (off) or the value."""
    return STALE_DEFAULTS_S.get(task, 0.0) if value < 0 else value


@dataclass(frozen=True)
class OutputLimit:
    """One `output_limits` item: `name:min:max` (every value of the output) or `name[i]:min:max`."""

    output: str
    index: int | None
    low: float
    high: float


def parse_output_limits(items: Iterable[str]) -> tuple[OutputLimit, ...]:
    """`output_limits` items, checked for their form; ConfigError says what is wrong and how to write it."""
    limits: list[OutputLimit] = []
    seen: set[tuple[str, int | None]] = set()
    for item in items:
        parts = [p.strip() for p in item.split(":")]
        target = _LIMIT.match(parts[0]) if len(parts) == 3 else None
        try:
            low, high = (float(parts[1]), float(parts[2])) if target else (math.nan, math.nan)
        except ValueError:
            target = None
        if target is None or not (math.isfinite(low) and math.isfinite(high)):
            raise ConfigError(f"output_limits: {item!r} must look like 'cmd_vel:-1.0:1.0' (every value of the "
                              f"output) or 'cmd_vel[1]:-0.5:0.5' (its value 1), with finite numbers")
        if low > high:
            raise ConfigError(f"output_limits: {item!r} has min {low:g} above max {high:g}")
        key = (target.group(1), int(target.group(2)) if target.group(2) is not None else None)
        if key in seen:
            raise ConfigError(f"output_limits: {parts[0]!r} is given twice; give each output or value once")
        seen.add(key)
        limits.append(OutputLimit(key[0], key[1], low, high))
    return tuple(limits)


@dataclass(frozen=True)
class GuardSettings:
    """The guard's parameters, as the node read them."""

    out_of_envelope: str = "drop"
    envelope_margin: float = 0.1
    output_limits: tuple[OutputLimit, ...] = ()


# The bounds of a value without a range: finite float32 ones, so that clamping tells infinities too.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _envelope(entry: FeatureEntry, margin: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The entry's recorded range widened by `margin` of its width, as [1, *shape]; None without one."""
    recorded = entry.range
    if recorded is None:
        return None
    low = np.asarray(recorded.low, dtype=np.float64)
    high = np.asarray(recorded.high, dtype=np.float64)
    width = high - low
    return (np.clip(low - margin * width, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32).reshape(1, *entry.shape),
            np.clip(high + margin * width, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32).reshape(1, *entry.shape))


# Up to this many values (in one dimension) a check compares Python floats; above, numpy's per-value speed wins.
_PYTHON_CHECK_MAX_VALUES = 64


class Clamp:
    """The bounds of one [1, *shape] array: `fits` tells whether it is finite and inside, `clamp` clamps it."""

    def __init__(self, shape: tuple[int, ...], bounds: tuple[np.ndarray, np.ndarray] | None) -> None:
        if bounds is None:
            bounds = (np.full((1, *shape), -_FLOAT32_MAX, np.float32), np.full((1, *shape), _FLOAT32_MAX, np.float32))
        self.low, self.high = bounds
        self.clamped = np.empty((1, *shape), dtype=np.float32)
        # (low, high) per value as Python floats, for an array of a few values in one dimension; else None.
        self._pairs: list[tuple[float, float]] | None = None
        if len(shape) == 1 and shape[0] <= _PYTHON_CHECK_MAX_VALUES:
            self._pairs = list(zip(self.low[0].tolist(), self.high[0].tolist(), strict=True))

    def fits(self, value: np.ndarray) -> bool:
        """Whether every value is finite and within the bounds (finite ones, so an infinity is outside).

        A comparison with a NaN is false, and fmin/fmax return the bound for a NaN, so a NaN never fits.
        """
        pairs = self._pairs
        if pairs is None:
            return self.clamp(value).tobytes() == value.tobytes()
        # Every message runs this: tolist()[0] makes no numpy view, zip without strict= parses no keyword
        # (the readers made the shape), and a loop costs less than all() over a generator.
        for number, (low, high) in zip(value.tolist()[0], pairs):  # noqa: B905, SIM110
            if not low <= number <= high:
                return False
        return True

    def clamp(self, value: np.ndarray) -> np.ndarray:
        """The values clamped into the bounds (a NaN becomes a bound), in a buffer reused by the next call."""
        return np.fmax(np.fmin(value, self.high, out=self.clamped), self.low, out=self.clamped)


class InputCheck:
    """One input's check: finite, and inside its envelope when it has one."""

    def __init__(self, entry: FeatureEntry, settings: GuardSettings) -> None:
        self.name = entry.name
        self.policy = settings.out_of_envelope
        self.bounds = _envelope(entry, settings.envelope_margin)
        self._clamp = Clamp(entry.shape, self.bounds)

    def check(self, value: np.ndarray) -> tuple[np.ndarray | None, str]:
        """(the value to feed, None to drop it; the reason counted, '' when it passed untouched).

        `value` is [1, *shape] float32, as the readers make it.
        """
        clamp = self._clamp
        if clamp.fits(value):
            return value, ""
        if not np.isfinite(value).all():
            return None, NON_FINITE_INPUT
        if self.policy == "drop":
            return None, OUT_OF_ENVELOPE_INPUT
        if self.policy == "clamp":
            return clamp.clamp(value).copy(), OUT_OF_ENVELOPE_INPUT
        return value, OUT_OF_ENVELOPE_INPUT


class Guard:
    """The checks of one model's inputs and outputs, built once per wiring."""

    def __init__(self, features: Features, settings: GuardSettings) -> None:
        if settings.out_of_envelope not in OUT_OF_ENVELOPE_CHOICES:
            raise ConfigError(f"out_of_envelope: {settings.out_of_envelope!r} must be one of "
                              f"{', '.join(OUT_OF_ENVELOPE_CHOICES)}")
        self.inputs = tuple(InputCheck(entry, settings) for entry in features.inputs)
        # One (low, high) or None per graph output, in graph order. A detection model's rows have no
        # per-value envelope: they are checked for non-finite values only (the writer drops rows of
        # unknown classes or empty boxes, and maps boxes into the image).
        self.output_bounds: list[tuple[np.ndarray, np.ndarray] | None]
        if features.is_detection:
            if settings.output_limits:
                raise ConfigError("output_limits: a detection model's output (its detection rows) takes no "
                                  "limits; leave output_limits empty")
            shapes = output_shapes(features)
            self.output_bounds = [None] * len(shapes)
            self._outputs = [Clamp(shape, None) for shape in shapes.values()]
        else:
            known = {entry.name: entry.size for entry in features.outputs}
            for limit in settings.output_limits:
                if limit.output not in known:
                    raise ConfigError(f"output_limits: {limit.output!r} is not an output of this model; its "
                                      f"outputs are {', '.join(known)}")
                if limit.index is not None and limit.index >= known[limit.output]:
                    raise ConfigError(f"output_limits: {limit.output}[{limit.index}] is past the output's "
                                      f"{known[limit.output]} values (indexes 0..{known[limit.output] - 1})")
            self.output_bounds = [self._output_bounds(entry, settings) for entry in features.outputs]
            self._outputs = [Clamp(entry.shape, bounds)
                             for entry, bounds in zip(features.outputs, self.output_bounds, strict=True)]

    @staticmethod
    def _output_bounds(entry: FeatureEntry, settings: GuardSettings) -> tuple[np.ndarray, np.ndarray] | None:
        bounds = _envelope(entry, settings.envelope_margin)
        limits = [limit for limit in settings.output_limits if limit.output == entry.name]
        if not limits:
            return bounds
        low, high = (b.reshape(-1).copy() for b in bounds) if bounds is not None else (
            np.full(entry.size, -_FLOAT32_MAX, np.float32), np.full(entry.size, _FLOAT32_MAX, np.float32))
        # The whole-output limits first, then the per-value ones, so the narrower statement wins.
        for limit in sorted(limits, key=lambda lim: lim.index is not None):
            where = slice(None) if limit.index is None else limit.index
            low[where], high[where] = limit.low, limit.high
        return low.reshape(1, *entry.shape), high.reshape(1, *entry.shape)

    def check_outputs(self, outputs: Sequence[np.ndarray]) -> str:
        """'' when every output may go as it is; CLAMPED_OUTPUT after clamping (in place);
        NON_FINITE_OUTPUT when nothing may be published."""
        clamped = False
        for output, clamp in zip(outputs, self._outputs, strict=True):
            if clamp.fits(output):
                continue
            if not np.isfinite(output).all():
                return NON_FINITE_OUTPUT
            np.copyto(output, clamp.clamp(output))
            clamped = True
        return CLAMPED_OUTPUT if clamped else ""

    @staticmethod
    def safe_outputs(features: Features) -> list[np.ndarray] | None:
        """What the node publishes once when its trigger input goes stale; None: nothing (the task's rule)."""
        if features.task not in ZERO_SAFE_OUTPUT_TASKS:
            return None
        return [np.zeros((1, *entry.shape), dtype=np.float32) for entry in features.outputs]
