"""Time alignment of messages into samples (docs/features.md, "Alignment").

The rules, the same for the recorder on the robot and the importer in the backend:

- one sample per message of the first input (the trigger), stamped with it;
- every other input takes its latest value at or before the trigger's stamp;
- every output takes its first message at or after the trigger's stamp and
  before the next trigger's (so an output stamped with its input's header
  stamp belongs to that input's sample);
- a sample that cannot be completed is dropped and counted by reason:
  `missing_input:<name>` (no value yet), `missing_output:<name>` (none in the
  window), `unreadable:<name>` (the message chosen could not be read),
  `non_finite:<name>` (NaN or infinity), `duplicate_trigger` (a second
  trigger with the same stamp before any output).

Messages may arrive out of stamp order by up to `max_delay_ns` (topics of a
recording interleave by receive time while their stamps are header stamps):
they wait in a heap until the newest stamp seen is more than that past them,
and are then taken in stamp order. One that arrives after a later one was
taken is not used and is counted in `late`. Memory is bounded by the messages within that
delay, never by the length of the recording.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from kairo_features.fields import Letterbox
from kairo_features.schema import BOX_SIZE, Features

__all__ = ["DEFAULT_MAX_DELAY_NS", "Aligner", "Sample"]

DEFAULT_MAX_DELAY_NS = 1_000_000_000
_FLOAT32 = np.dtype(np.float32)

# Order of messages with equal stamps: other inputs (at or before the
# trigger), then the trigger, then outputs (at or after it).
_INPUT, _TRIGGER, _OUTPUT = 0, 1, 2


class _Fitted(NamedTuple):
    """An image's values with how the camera's image was fitted into them (letterboxed)."""

    values: np.ndarray
    letterbox: Letterbox


def _boxes_into(boxes: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Boxes [n, 4] (center_x, center_y, size_x, size_y) in the camera's pixels -> the model input's."""
    half = boxes[:, 2:] / 2
    fitted = letterbox.to_input(np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1))
    return np.concatenate([(fitted[:, :2] + fitted[:, 2:]) / 2, fitted[:, 2:] - fitted[:, :2]],
                          axis=1).astype(np.float32)


class Sample(NamedTuple):
    """One aligned sample: the trigger's stamp and one array per dataset array name."""

    stamp_ns: int
    values: dict[str, np.ndarray]


class _Unreadable:
    """Stands for a message whose values could not be read."""

    __slots__ = ()


_UNREADABLE = _Unreadable()


class _Open:
    """The sample of the latest trigger, waiting for its outputs."""

    __slots__ = ("inputs", "outputs", "stamp_ns")

    def __init__(self, stamp_ns: int, inputs: dict[str, Any]) -> None:
        self.stamp_ns = stamp_ns
        self.inputs = inputs
        self.outputs: dict[str, Any] = {}


class Aligner:
    """Turns a stream of (entry, stamp, values) into samples, incrementally.

    `add()` and `finish()` return the samples they completed, in stamp order;
    `dropped` counts the samples that could not be completed, by reason, and
    `late` the messages that came too late to be used, by entry name. The
    arrays given to `add()` are kept as they are: pass arrays you will not
    change. Values are what `kairo_features.fields.entry_reader` gives: the
    entry's values (any array with the entry's size), for an image also the
    Letterbox that fitted it into the model's input, or for a detection
    output [n, 5] rows (label, center_x, center_y, size_x, size_y), one per
    detection (n may be 0), which become the sample's `labels` [n] and
    `boxes` [n, 4] (the importer pads them to the dataset's longest). Boxes
    are in the camera's pixels; with a letterboxed image in the sample they
    are mapped into the model input's pixels as the image was.
    """

    def __init__(self, features: Features, *, topics: Mapping[str, str] | None = None,
                 max_delay_ns: int = DEFAULT_MAX_DELAY_NS) -> None:
        if max_delay_ns < 0:
            raise ValueError(f"max_delay_ns: {max_delay_ns} must be >= 0")
        self.features = features
        self.max_delay_ns = int(max_delay_ns)
        self.dropped: Counter[str] = Counter()
        self.late: Counter[str] = Counter()
        self.samples = 0
        topics = dict(topics or {})
        self._trigger = features.trigger.name
        self._others = tuple(e.name for e in features.inputs[1:])
        self._outputs = tuple(e.name for e in features.outputs)
        # name (or unique topic) -> (name, kind, shape, size): one dict lookup per message
        self._lookup: dict[str, tuple[str, int, tuple[int, ...], int]] = {}
        by_topic: dict[str, list[str]] = {}
        for entry in features.entries:
            kind = _OUTPUT if entry.is_output else _TRIGGER if entry.name == self._trigger else _INPUT
            shape = (-1, 1 + BOX_SIZE) if entry.is_detection else entry.shape
            self._lookup[entry.name] = (entry.name, kind, shape, 1 + BOX_SIZE if entry.is_detection
                                        else math.prod(shape))
            by_topic.setdefault(topics.get(entry.name, entry.topic), []).append(entry.name)
        for topic, names in by_topic.items():
            if len(names) == 1:
                self._lookup[topic] = self._lookup[names[0]]
        self._by_topic = by_topic
        self._order = tuple((e.name, e.is_detection) for e in features.entries)
        self._plain = frozenset(e.name for e in features.entries if not e.is_detection)
        self._heap: list[tuple[int, int, int, str, Any]] = []
        self._seq = 0
        self._newest = -math.inf  # the newest stamp seen
        self._released: tuple[int, int] = (-1 << 63, -1)  # (stamp, kind) of the last message taken
        self._latest: dict[str, Any] = {}
        self._open: _Open | None = None
        self._finished = False

    def entry_name(self, name_or_topic: str) -> str:
        """The entry a name or topic means; ValueError when unknown or shared by several entries."""
        spec = self._lookup.get(name_or_topic)
        if spec is not None:
            return spec[0]
        names = self._by_topic.get(name_or_topic)
        if names:
            raise ValueError(f"topic {name_or_topic} feeds {', '.join(names)}: add their values by entry name")
        raise ValueError(f"{name_or_topic!r} is neither an input or output name nor one of their topics "
                         f"({', '.join(sorted(self._by_topic))})")

    def add(self, name_or_topic: str, stamp_ns: int, values: np.ndarray | tuple[np.ndarray, Letterbox]
            ) -> list[Sample]:
        """One message's values (kept as float32 in the entry's shape); the samples this completes."""
        spec = self._lookup.get(name_or_topic)
        if spec is None:
            self.entry_name(name_or_topic)  # raises the reason
            raise AssertionError  # unreachable
        name, kind, shape, size = spec
        letterbox = None
        if type(values) is tuple:
            values, letterbox = values
        array = values if type(values) is np.ndarray and values.dtype == _FLOAT32 \
            else np.asarray(values, dtype=np.float32)
        if name not in self._plain:
            if array.size % size:
                raise ValueError(f"{name}: a detection output takes rows of [label, center_x, center_y, size_x, "
                                 f"size_y]; got {array.size} values")
            return self._push(name, kind, stamp_ns, array.reshape(shape))
        if array.size != size:
            raise ValueError(f"{name}: got {array.size} values; the entry takes {size} "
                             f"(shape {list(shape)}); use add_unreadable for a message that cannot be read")
        if array.shape != shape:
            array = array.reshape(shape)
        return self._push(name, kind, stamp_ns, array if letterbox is None else _Fitted(array, letterbox))

    def add_unreadable(self, name_or_topic: str, stamp_ns: int) -> list[Sample]:
        """A message that arrived but could not be read: a sample that would use it is dropped."""
        name = self.entry_name(name_or_topic)
        return self._push(name, self._lookup[name][1], stamp_ns, _UNREADABLE)

    def finish(self) -> list[Sample]:
        """The end of the stream: take every waiting message; the samples this completes."""
        done: list[Sample] = []
        while self._heap:
            self._take(heapq.heappop(self._heap), done)
        if self._open is not None:
            self._drop_open()
        self._finished = True
        return done

    def _push(self, name: str, kind: int, stamp_ns: int, values: Any) -> list[Sample]:
        if self._finished:
            raise RuntimeError("the Aligner has finished; make a new one for another stream")
        stamp_ns = int(stamp_ns)
        if (stamp_ns, kind) < self._released:
            self.late[name] += 1
            return []
        self._seq += 1
        heapq.heappush(self._heap, (stamp_ns, kind, self._seq, name, values))
        if stamp_ns > self._newest:
            self._newest = stamp_ns
        done: list[Sample] = []
        ready = self._newest - self.max_delay_ns
        while self._heap and self._heap[0][0] < ready:
            self._take(heapq.heappop(self._heap), done)
        return done

    def _take(self, item: tuple[int, int, int, str, Any], done: list[Sample]) -> None:
        stamp_ns, kind, _, name, values = item
        self._released = (stamp_ns, kind)
        if kind == _INPUT:
            self._latest[name] = values
        elif kind == _TRIGGER:
            self._trigger_at(stamp_ns, values)
        else:
            opened = self._open
            if opened is None or name in opened.outputs:
                return  # before the first trigger, or not the first in its window
            opened.outputs[name] = values
            if len(opened.outputs) == len(self._outputs):
                self._open = None
                self._complete(opened, done)

    def _trigger_at(self, stamp_ns: int, values: Any) -> None:
        previous = self._open
        if previous is not None:
            if previous.stamp_ns == stamp_ns and not previous.outputs:
                self.dropped["duplicate_trigger"] += 1
                self._open = None
            else:
                self._drop_open()
        inputs = {self._trigger: values}
        for name in self._others:
            if name not in self._latest:
                self.dropped[f"missing_input:{name}"] += 1
                self._open = None
                return
            inputs[name] = self._latest[name]
        self._open = _Open(stamp_ns, inputs)

    def _drop_open(self) -> None:
        opened = self._open
        assert opened is not None
        self._open = None
        missing = next(n for n in self._outputs if n not in opened.outputs)
        self.dropped[f"missing_output:{missing}"] += 1

    def _complete(self, opened: _Open, done: list[Sample]) -> None:
        values: dict[str, np.ndarray] = {}
        taken = {**opened.inputs, **opened.outputs}
        letterbox: Letterbox | None = None  # the first image's: outputs come after the inputs in _order
        for name, detection in self._order:
            value = taken[name]
            if type(value) is _Fitted:
                letterbox = letterbox or value.letterbox
                value = value.values
            if value is _UNREADABLE:
                self.dropped[f"unreadable:{name}"] += 1
                return
            if not _finite(value):
                self.dropped[f"non_finite:{name}"] += 1
                return
            if detection:
                values["labels"] = value[:, 0].astype(np.int64)
                values["boxes"] = value[:, 1:] if letterbox is None else _boxes_into(value[:, 1:], letterbox)
            else:
                values[name] = value
        self.samples += 1
        done.append(Sample(opened.stamp_ns, values))


def _finite(values: np.ndarray) -> bool:
    """No NaN or infinity (a Python sum for small arrays: numpy's call costs more there)."""
    if values.size <= 64:
        return math.isfinite(sum(values.ravel().tolist()))  # float32 values: the sum cannot overflow
    return bool(np.isfinite(values).all())
