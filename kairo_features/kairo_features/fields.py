"""Reading a features entry's values out of a message, by dotted field paths.

Works on anything with attributes: rclpy messages, the dataclasses a rosbag
library deserializes into, and plain dicts (e.g. decoded JSON). A path that
names a numeric scalar gives one value, a numeric sequence or array all its
values; an entry's paths are concatenated in order (docs/features.md).

Paths are compiled once (`FieldsReader`), so the per-message work on the
inference node's hot path is one C-level attribute walk and one numpy
conversion per field.

Range sensors' conventions (REP 117) are applied where a field is read, so
training data and inference see the same values: `ranges` of a LaserScan,
`range` of a sensor_msgs/Range (`RANGE_CONVENTIONS`, `apply_rep117`).
"""

from __future__ import annotations

import array
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kairo_features.schema import BOX_SIZE, IMAGE_ENCODINGS, FeatureEntry

__all__ = ["RANGE_CONVENTIONS", "FieldError", "FieldsReader", "ImageReader", "apply_rep117", "entry_reader",
           "image_to_array", "read_detection", "read_field", "read_fields"]

# Channels per image encoding (what a message may arrive in).
IMAGE_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
assert tuple(IMAGE_CHANNELS) == IMAGE_ENCODINGS
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BYTES = (bytes, bytearray, memoryview)


class FieldError(ValueError):
    """A message does not hold what a features entry reads from it (the message names the path)."""


def _walk(msg: Any, attrs: Sequence[str]) -> Any:
    """The slow path: attributes or mapping keys, step by step."""
    for attr in attrs:
        msg = msg[attr] if isinstance(msg, Mapping) else getattr(msg, attr)
    return msg


class FieldPath:
    """One compiled dotted path (`point.x`)."""

    __slots__ = ("_attrs", "_getter", "path")

    def __init__(self, path: str) -> None:
        if not path or any(not part for part in path.split(".")):
            raise FieldError(f"field path {path!r}: must be names separated by dots, like point.x")
        self.path = path
        self._attrs = tuple(path.split("."))
        self._getter = operator.attrgetter(path)

    def get(self, msg: Any) -> Any:
        """The value at the path; FieldError when the message has no such field."""
        try:
            return self._getter(msg)
        except AttributeError:
            try:
                return _walk(msg, self._attrs)
            except (AttributeError, KeyError, TypeError):
                raise FieldError(f"field {self.path!r}: {type(msg).__name__} has no such field") from None

    def read(self, msg: Any) -> np.ndarray:
        """The values at the path as a flat float32 array."""
        return as_float32(self.get(msg), self.path)


# Scalar types a message field holds (Python's, and numpy's in deserialized messages).
_SCALARS = frozenset({float, int, bool, np.float32, np.float64, np.int8, np.uint8, np.int16, np.uint16,
                      np.int32, np.uint32, np.int64, np.uint64, np.bool_})
_NUMERIC_KINDS = frozenset("biuf")


def _not_numeric(value: Any, path: str) -> FieldError:
    return FieldError(f"field {path!r}: holds {type(value).__name__}, not a number or a sequence of numbers")


def as_float32(value: Any, path: str) -> np.ndarray:
    """A field's value (number, bool, sequence, array.array, numpy array, bytes) as flat float32.

    Strings are refused, also where numpy would parse them ("1.5").
    """
    kind = type(value)
    if kind is array.array:  # rclpy's numeric sequences
        if value.typecode == "u":
            raise _not_numeric(value, path)
        values = np.asarray(value, dtype=np.float32)
    elif kind in _SCALARS:
        return np.array((value,), dtype=np.float32)
    elif kind is np.ndarray:  # rclpy's fixed arrays, a rosbag library's sequences
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise _not_numeric(value, path)
        values = np.asarray(value, dtype=np.float32)
    elif kind in _BYTES:
        return np.frombuffer(value, dtype=np.uint8).astype(np.float32)
    elif kind is list or kind is tuple:
        try:
            values = np.asarray(value)
        except ValueError:  # ragged
            raise _not_numeric(value, path) from None
        if values.dtype.kind not in _NUMERIC_KINDS:
            raise _not_numeric(value, path)
        values = values.astype(np.float32)
    else:
        raise _not_numeric(value, path)
    return values if values.ndim == 1 else values.reshape(-1)


# REP 117: a field of these names, beside the bounds named here on the same message (LaserScan's
# `ranges` with `range_min`/`range_max`, sensor_msgs/Range's `range` with `min_range`/`max_range`),
# holds +Inf for "no return" and -Inf for "too close", and NaN for an invalid reading.
RANGE_CONVENTIONS = {"ranges": ("range_min", "range_max"), "range": ("min_range", "max_range")}


def apply_rep117(values: np.ndarray, range_min: float, range_max: float) -> np.ndarray:
    """Range readings with REP 117's non-finite values replaced (a new array; `values` is left alone).

    +Inf (no return) -> range_max, -Inf (too close) -> range_min; NaN (invalid)
    -> the nearer of the nearest valid readings on either side along the
    array (one side at the ends, no wrap-around). With no valid reading at
    all the NaNs stay: there is nothing to infer them from, and the guard
    or the aligner drops the message (docs/features.md, "Range sensors").
    """
    out = np.array(values, dtype=np.float32)  # a copy: `values` may be a view of the message's buffer
    out[out == np.inf] = range_max
    out[out == -np.inf] = range_min
    invalid = np.isnan(out)
    if not invalid.any():
        return out
    valid_at = np.flatnonzero(~invalid)
    if valid_at.size == 0:
        return out
    invalid_at = np.flatnonzero(invalid)
    after = np.searchsorted(valid_at, invalid_at)  # the nearest valid reading after each NaN (or none)
    from_before = out[valid_at[np.maximum(after - 1, 0)]]  # at the start: the one after
    from_after = out[valid_at[np.minimum(after, valid_at.size - 1)]]  # at the end: the one before
    out[invalid_at] = np.minimum(from_before, from_after)
    return out


class _RangeConvention:
    """REP 117 for one field path: finds the bounds beside the field, on the same (sub)message."""

    __slots__ = ("_bounds", "_parent")

    def __init__(self, path: str) -> None:
        *parent, name = path.split(".")
        self._parent = FieldPath(".".join(parent)).get if parent else None
        self._bounds = RANGE_CONVENTIONS[name]

    def apply(self, msg: Any, values: np.ndarray) -> np.ndarray:
        """`values` with the convention applied; unchanged when the message carries no bounds."""
        try:
            holder = msg if self._parent is None else self._parent(msg)
            low, high = (float(_attr(holder, bound)) for bound in self._bounds)
        except (AttributeError, KeyError, TypeError, ValueError, FieldError):
            return values  # not a range sensor's message: its values are what they are
        return apply_rep117(values, low, high)


def _range_convention(path: str) -> _RangeConvention | None:
    return _RangeConvention(path) if path.rsplit(".", 1)[-1] in RANGE_CONVENTIONS else None


def read_field(message: Any, path: str) -> np.ndarray:
    """The values at one dotted path of a message, as a flat float32 array."""
    return FieldsReader((path,)).read(message)


class FieldsReader:
    """Reads an entry's dotted paths and concatenates their values (flat float32).

    `size`, when given, is the number of values the entry takes; another
    count is a FieldError. `read(msg)` is a closure compiled once for these
    fields, so a read costs no attribute lookups on the reader. Range
    sensors' fields (RANGE_CONVENTIONS) come with REP 117 applied.
    """

    __slots__ = ("fields", "read", "size")

    def __init__(self, fields: Sequence[str], size: int | None = None) -> None:
        if not fields:
            raise FieldError("an entry reads at least one field")
        self.fields = tuple(fields)
        self.size = size
        self.read: Callable[[Any], np.ndarray] = _compile_reader(self.fields, size)


def _compile_reader(fields: tuple[str, ...], size: int | None) -> Callable[[Any], np.ndarray]:
    paths = tuple(FieldPath(f) for f in fields)
    conventions = tuple(map(_range_convention, fields))
    getter = operator.attrgetter(*fields)  # one C call fetches every path (a tuple when several)
    asarray, float32, sequence_type, isfinite = np.asarray, np.float32, array.array, math.isfinite
    expected = -1 if size is None else size

    def wrong_size(values: np.ndarray) -> FieldError:
        return FieldError(f"got {values.size} values from {', '.join(fields)}; the entry takes {size}")

    if len(fields) == 1:
        path, name, convention = paths[0], fields[0], conventions[0]
        def read_one(msg: Any) -> np.ndarray:
            try:
                raw = getter(msg)
            except AttributeError:  # a mapping, or a missing field: the slow path says which
                raw = path.get(msg)
            # rclpy's numeric sequences inline (the common case on the robot), the rest by as_float32
            if type(raw) is sequence_type and raw.typecode != "u":
                values = asarray(raw, dtype=float32)
            else:
                values = as_float32(raw, name)
            if expected >= 0 and values.size != expected:
                raise wrong_size(values)
            if convention is None:
                return values
            # all finite, in one BLAS call (isfinite().all() costs several times more): v.v is Inf or
            # NaN as soon as one value is, and raises no floating-point warning for them (Inf*0 would)
            if isfinite(values.dot(values)):
                return values
            return convention.apply(msg, values)
        return read_one

    scalars, concatenate = _SCALARS, np.concatenate
    plain = not any(conventions)

    def read_many(msg: Any) -> np.ndarray:
        try:
            raw = getter(msg)
        except AttributeError:
            raw = tuple(p.get(msg) for p in paths)
        if plain and scalars.issuperset(map(type, raw)):
            values = asarray(raw, dtype=float32)
        else:
            parts = [as_float32(v, f) for v, f in zip(raw, fields, strict=True)]
            for i, convention in enumerate(conventions):
                if convention is not None and not np.isfinite(parts[i]).all():
                    parts[i] = convention.apply(msg, parts[i])
            values = concatenate(parts)
        if expected >= 0 and values.size != expected:
            raise wrong_size(values)
        return values
    return read_many


def read_fields(message: Any, fields: Sequence[str]) -> np.ndarray:
    """The concatenated values of several dotted paths (flat float32)."""
    return FieldsReader(fields).read(message)


_IMAGE_KEYS = ("height", "width", "encoding", "step", "data")
_IMAGE_FIELDS = operator.attrgetter(*_IMAGE_KEYS)


def _attr(msg: Any, name: str) -> Any:
    return msg[name] if isinstance(msg, Mapping) else getattr(msg, name)


def _as_uint8(data: Any) -> np.ndarray:
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list
        return np.asarray(data, dtype=np.uint8)


def image_to_array(msg: Any, shape: Sequence[int]) -> np.ndarray:
    """A sensor_msgs/Image (any object with height, width, encoding, step, data) as float32 [C, H, W].

    The message may be in any of IMAGE_ENCODINGS; the result has the model's
    channels: 3 in RGB order, or 1 (luma) . Its height and width must be the shape's.
    """
    channels, height, width = shape
    try:
        msg_height, msg_width, encoding, step, data = _IMAGE_FIELDS(msg)
    except AttributeError:
        msg_height, msg_width, encoding, step, data = (_attr(msg, k) for k in _IMAGE_KEYS)
    if msg_height != height or msg_width != width:
        raise FieldError(f"image is {msg_width}x{msg_height}; the model takes {width}x{height}; resize it upstream")
    msg_channels = IMAGE_CHANNELS.get(encoding)
    if msg_channels is None:
        raise FieldError(f"encoding {encoding!r} is not supported; publish one of {', '.join(IMAGE_ENCODINGS)}")
    row = width * msg_channels
    step = step or row
    data = _as_uint8(data)
    if step < row or data.size < step * height:
        raise FieldError(f"{data.size} bytes with step {step} cannot hold a {width}x{height} {encoding} image")
    if step == row and data.size == row * height:
        hwc = data.reshape(height, width, msg_channels)
    else:
        hwc = data[:step * height].reshape(height, step)[:, :row].reshape(height, width, msg_channels)
    if encoding == "mono8":
        mono = hwc[:, :, 0].astype(np.float32)
        return mono[None] if channels == 1 else np.repeat(mono[None], 3, axis=0)
    rgb = hwc[:, :, 2::-1] if encoding.startswith("bgr") else hwc[:, :, :3]
    if channels == 1:
        return (rgb.astype(np.float32) @ _LUMA)[None]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)


class ImageReader:
    """An image input's reader: message -> float32 [C, H, W]."""

    __slots__ = ("shape",)

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(shape)

    def read(self, msg: Any) -> np.ndarray:
        return image_to_array(msg, self.shape)


def read_detection(msg: Any, classes: Sequence[str]) -> np.ndarray:
    """A Detection2DArray's best detection as float32 [label, center_x, center_y, size_x, size_y].

    The label is the class's index in `classes`; the Aligner turns this into
    the dataset's `labels` and `boxes`.
    """
    detections = list(_attr(msg, "detections"))
    if not detections:
        raise FieldError("detections: the message holds no detection")
    best = max(detections, key=lambda d: float(_attr(d, "score")))
    class_id = _attr(best, "class_id")
    if class_id not in classes:
        raise FieldError(f"detections: class {class_id!r} is not one of the model's classes ({', '.join(classes)})")
    box = _attr(best, "bbox")
    values = [classes.index(class_id)] + [float(_attr(box, k)) for k in ("center_x", "center_y", "size_x", "size_y")]
    assert len(values) == 1 + BOX_SIZE
    return np.asarray(values, dtype=np.float32)


def entry_reader(entry: FeatureEntry, classes: Sequence[str] = ()) -> Callable[[Any], np.ndarray]:
    """What the Aligner takes for an entry, read from one of its messages.

    Fields: the flat values (checked against the entry's size); images:
    [C, H, W]; a detection output: [label, box...] (read_detection).
    """
    if entry.is_image:
        return ImageReader(entry.shape).read
    if entry.is_detection:
        names = tuple(classes)
        return lambda msg: read_detection(msg, names)
    return FieldsReader(entry.fields, entry.size).read
