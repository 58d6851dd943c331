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
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairo_features.schema import BOX_SIZE, IMAGE_ENCODINGS, FeatureEntry

__all__ = ["LETTERBOX_FILL", "RANGE_CONVENTIONS", "FieldError", "FieldsReader", "ImageReader", "Letterbox",
           "ReadValues", "apply_rep117", "entry_reader", "image_to_array", "letterbox_for", "read_detection",
           "read_field", "read_fields"]

# Per image encoding a message may arrive in: (channels, colour order, bytes per value).
IMAGE_LAYOUTS = {"rgb8": (3, "rgb", 1), "bgr8": (3, "bgr", 1), "rgba8": (4, "rgb", 1), "bgra8": (4, "bgr", 1),
                 "mono8": (1, "mono", 1), "rgb16": (3, "rgb", 2), "bgr16": (3, "bgr", 2),
                 "rgba16": (4, "rgb", 2), "bgra16": (4, "bgr", 2), "mono16": (1, "mono", 2),
                 # YUV 4:2:2, two bytes a pixel (USB cameras' native formats): U Y0 V Y1, and Y0 U Y1 V
                 "yuv422": (2, "uyvy", 1), "yuv422_yuy2": (2, "yuyv", 1)}
# Where Y, U and V sit in each 4-byte pair of pixels of the two YUV 4:2:2 orders.
_YUV422_BYTES = {"uyvy": (1, 3, 0, 2), "yuyv": (0, 2, 1, 3)}  # Y0, Y1, U, V
assert tuple(IMAGE_LAYOUTS) == IMAGE_ENCODINGS
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


def _bytes_of(data: Any) -> np.ndarray:
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list
        return np.asarray(data, dtype=np.uint8)


# Letterbox padding: YOLO's grey (114 of 255), so a padded band reads as "nothing here" to a model
# trained on letterboxed images; the backend pads its training images the same way (one function).
LETTERBOX_FILL = 114 / 255


@dataclass(frozen=True)
class Letterbox:
    """How an image of `width` x `height` pixels was fitted into a model's input (letterboxed).

    It was scaled by `scale_x`, `scale_y` (both min(W/width, H/height) up to the rounding of
    the scaled size to whole pixels, so the aspect ratio is kept), then placed at (`pad_x`,
    `pad_y`) on a LETTERBOX_FILL canvas. A point x of the model's input is
    `(x - pad_x) / scale_x` in the original image.
    """

    width: int
    height: int
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes [n, 4] (x1, y1, x2, y2) in model-input pixels -> the original image's pixels, clipped to it."""
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        limit = np.array([self.width, self.height, self.width, self.height])
        return np.clip((boxes - offset) / scale, 0.0, limit)

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes [n, 4] (x1, y1, x2, y2) in the original image's pixels -> model-input pixels."""
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        return boxes * scale + offset


def letterbox_for(width: int, height: int, shape: Sequence[int]) -> Letterbox:
    """The letterbox that fits a `width` x `height` image into a [C, H, W] input."""
    _, model_height, model_width = shape
    scale = min(model_width / width, model_height / height)
    scaled_width = min(model_width, max(1, round(width * scale)))
    scaled_height = min(model_height, max(1, round(height * scale)))
    return Letterbox(width, height, scaled_width / width, scaled_height / height,
                     (model_width - scaled_width) // 2, (model_height - scaled_height) // 2)


def _taps(old: int, new: int) -> tuple[np.ndarray, np.ndarray]:
    """(indexes [new, k], weights [new, k]) that resize one axis of `old` samples to `new`.

    Shrinking averages areas: output sample i covers [i, i + 1) * old / new of the input, and
    each input sample weighs by how much of it lies inside. Enlarging interpolates linearly
    between the two nearest input samples (pixel centres at +0.5, as OpenCV and PIL place them).
    Area, not bilinear, for shrinking: a 640-wide camera frame goes into a 160-wide model, and
    bilinear would read 2 of every 4 columns, so thin edges and sensor noise would alias into the
    model's input; the average of the whole footprint is what a smaller camera would have seen.
    """
    if new < old:
        ratio = old / new
        starts = np.arange(new) * ratio
        first = np.floor(starts).astype(np.int64)
        width = int(np.ceil(ratio)) + 1
        index = first[:, None] + np.arange(width)[None, :]
        low = np.maximum(index, starts[:, None])
        high = np.minimum(index + 1, starts[:, None] + ratio)
        weights = np.clip(high - low, 0.0, None) / ratio
    else:
        centre = np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0.0, old - 1)
        below = np.floor(centre).astype(np.int64)
        index = np.stack([below, below + 1], axis=1)
        fraction = centre - below
        weights = np.stack([1.0 - fraction, fraction], axis=1)
    used = weights.max(axis=0) > 0  # drop tap columns that weigh nothing anywhere
    index, weights = index[:, used], weights[:, used]
    return np.minimum(index, old - 1), weights.astype(np.float32)


def _block(old: int, new: int) -> int:
    """The whole-number shrink factor from `old` to `new` samples, or 0 when it is not one."""
    return old // new if new < old and old % new == 0 else 0


class _ResizePlan:
    """One incoming image size's resize into a model input, computed once and reused per message.

    Separable: rows, then columns. A whole-number shrink on both axes (640x480 -> 160x120 is 4)
    sums each block with integer adds over strided views, no gather and no float until the end;
    any other ratio gathers each axis' taps (`_taps`) and multiply-adds them in float32.
    """

    __slots__ = ("block", "box", "col_index", "col_weights", "identity", "row_index", "row_weights", "size")

    def __init__(self, width: int, height: int, shape: Sequence[int], depth: int) -> None:
        self.box = letterbox_for(width, height, shape)
        self.size = (round(self.box.scale_y * height), round(self.box.scale_x * width))
        self.identity = self.size == (height, width)
        block = (_block(height, self.size[0]), _block(width, self.size[1]))
        # 8-bit sums of a block fit uint16 up to 257 pixels a block; deeper ones take the float path
        self.block = block if all(block) and depth == 1 and block[0] * block[1] <= 257 else None
        self.row_index, self.row_weights = _taps(height, self.size[0])
        self.col_index, self.col_weights = _taps(width, self.size[1])

    def resize(self, hwc: np.ndarray, value_scale: float) -> np.ndarray:
        """[h, w, c] integer pixels -> [H', W', c] float32 in [0, 1]."""
        if self.identity:
            return np.multiply(hwc, np.float32(value_scale), dtype=np.float32)
        if self.block is not None:
            return self._sum_blocks(hwc, value_scale)
        rows = self._taps_along(hwc, 0, self.row_index, self.row_weights * np.float32(value_scale))
        return self._taps_along(rows, 1, self.col_index, self.col_weights)

    def _sum_blocks(self, hwc: np.ndarray, value_scale: float) -> np.ndarray:
        (rows_per, cols_per), (height, width) = self.block, self.size  # type: ignore[misc]
        channels = hwc.shape[2]
        blocks = hwc.reshape(height, rows_per, hwc.shape[1], channels)
        rows = blocks[:, 0].astype(np.uint16)
        for row in range(1, rows_per):
            np.add(rows, blocks[:, row], out=rows)
        cells = rows.reshape(height, width, cols_per, channels)
        total = cells[:, :, 0].copy()
        for col in range(1, cols_per):
            np.add(total, cells[:, :, col], out=total)
        return np.multiply(total, np.float32(value_scale / (rows_per * cols_per)), dtype=np.float32)

    @staticmethod
    def _taps_along(values: np.ndarray, axis: int, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
        shape = [1, 1, 1]
        shape[axis] = -1
        out = np.multiply(np.take(values, index[:, 0], axis=axis), weights[:, 0].reshape(shape), dtype=np.float32)
        term = np.empty_like(out)
        for tap in range(1, index.shape[1]):
            np.multiply(np.take(values, index[:, tap], axis=axis), weights[:, tap].reshape(shape), out=term)
            out += term
        return out


def _pixels(msg: Any) -> tuple[np.ndarray, str]:
    """A sensor_msgs/Image's pixels as an [h, w, channels] integer view (no copy when rows are packed)."""
    try:
        height, width, encoding, step, data = _IMAGE_FIELDS(msg)
    except AttributeError:
        height, width, encoding, step, data = (_attr(msg, k) for k in _IMAGE_KEYS)
    layout = IMAGE_LAYOUTS.get(encoding)
    if layout is None:
        raise FieldError(f"encoding {encoding!r} is not supported; publish one of {', '.join(IMAGE_ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise FieldError(f"image is {width}x{height}; it needs at least one pixel")
    if layout[1] in _YUV422_BYTES and width % 2:
        raise FieldError(f"a {encoding} image is {width} pixels wide; YUV 4:2:2 pairs pixels, so it must be even")
    channels, depth = layout[0], layout[2]
    row = width * channels * depth
    step = step or row
    raw = _bytes_of(data)
    if step < row or raw.size < step * height:
        raise FieldError(f"{raw.size} bytes with step {step} cannot hold a {width}x{height} {encoding} image")
    if step == row and raw.size == row * height:  # packed rows, the usual case: a view as it is
        rows = raw.reshape(height, row)
    else:
        rows = raw[:step * height].reshape(height, step)[:, :row]
    if depth == 1:
        return rows.reshape(height, width, channels), encoding
    big_endian = bool(_attr(msg, "is_bigendian")) if _has(msg, "is_bigendian") else False
    dtype = np.dtype(">u2" if big_endian else "<u2")
    return np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels), encoding


def _has(msg: Any, name: str) -> bool:
    return name in msg if isinstance(msg, Mapping) else hasattr(msg, name)


def _yuv422_to_rgb(pixels: np.ndarray, where: tuple[int, int, int, int]) -> np.ndarray:
    """[h, w, 2] YUV 4:2:2 bytes -> [h, w, 3] uint8 RGB: ITU-R BT.601 with video range (Y 16-235,
    chroma 16-240), as OpenCV's COLOR_YUV2RGB_UYVY / _YUY2, which cv_bridge uses for these encodings."""
    height, width = pixels.shape[:2]
    pairs = np.ascontiguousarray(pixels).reshape(height, width // 2, 4).astype(np.float32)
    y0, y1, u, v = (pairs[:, :, i] for i in where)
    luma = np.stack([y0, y1], axis=2).reshape(height, width)
    luma = (luma - 16.0) * 1.164
    u = np.repeat(u - 128.0, 2, axis=1)
    v = np.repeat(v - 128.0, 2, axis=1)
    rgb = np.stack([luma + 1.596 * v, luma - 0.813 * v - 0.391 * u, luma + 2.018 * u], axis=2)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


class ImageReader:
    """An image input's reader: any sensor_msgs/Image -> float32 [C, H, W] in [0, 1], letterboxed.

    Whatever its size, the image is scaled to fit the model's H x W with its
    aspect ratio kept (area averaging when shrinking, bilinear when
    enlarging: `_taps`), centred, and the rest filled with LETTERBOX_FILL;
    `read_letterboxed` also gives the `Letterbox`, which maps boxes back to
    the image's own pixels. Colour comes out in RGB order (BGR and alpha
    are dropped or reordered); a 1-channel model gets luma (ITU-R BT.601).
    The resize plan of each incoming size is made once, so a camera's
    stream costs a few gathers and multiply-adds per frame.
    """

    __slots__ = ("_plans", "shape")

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(shape)
        self._plans: dict[tuple[int, int, str], _ResizePlan] = {}

    def read(self, msg: Any) -> np.ndarray:
        return self.read_letterboxed(msg)[0]

    def read_letterboxed(self, msg: Any) -> tuple[np.ndarray, Letterbox]:
        """The model's input and how the image was fitted into it."""
        hwc, encoding = _pixels(msg)
        height, width = hwc.shape[:2]
        channels, order, depth = IMAGE_LAYOUTS[encoding]
        if order in _YUV422_BYTES:
            hwc = _yuv422_to_rgb(hwc, _YUV422_BYTES[order])
        elif order == "bgr":
            hwc = hwc[:, :, 2::-1]
        elif channels == 4:
            hwc = hwc[:, :, :3]
        value_scale = 1.0 / (255.0 if depth == 1 else 65535.0)
        key = (height, width, encoding)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 8:  # a stream changing size every frame: keep the cache small
                self._plans.clear()
            plan = self._plans[key] = _ResizePlan(width, height, self.shape, depth)
        model_channels, model_height, model_width = self.shape
        box = plan.box
        if plan.identity and model_channels == hwc.shape[2]:  # the model's size already: one pass, no canvas
            return np.multiply(hwc.transpose(2, 0, 1), np.float32(value_scale), dtype=np.float32), box
        resized = plan.resize(hwc, value_scale)
        out = np.full((model_channels, model_height, model_width), LETTERBOX_FILL, dtype=np.float32)
        inside = out[:, box.pad_y:box.pad_y + resized.shape[0], box.pad_x:box.pad_x + resized.shape[1]]
        if model_channels == 1:
            inside[0] = resized[:, :, 0] if resized.shape[2] == 1 else resized @ _LUMA
        elif resized.shape[2] == 1:
            inside[:] = resized[:, :, 0]
        else:
            inside[:] = resized.transpose(2, 0, 1)
        return out, box


def image_to_array(msg: Any, shape: Sequence[int]) -> np.ndarray:
    """A sensor_msgs/Image (any object with height, width, encoding, step, data) as float32 [C, H, W].

    Letterboxed into the shape (ImageReader): any size and any of IMAGE_ENCODINGS.
    """
    return ImageReader(shape).read(msg)


def read_detection(msg: Any, classes: Sequence[str]) -> np.ndarray:
    """Every detection of a Detection2DArray as float32 [n, 5] rows (label, center_x, center_y, size_x, size_y).

    The label is the index in `classes` of each detection's best hypothesis
    (`results[].hypothesis.class_id`, by score); the box is in the image's
    pixels. A message without detections gives [0, 5]: an image with nothing
    in it. The Aligner pads these into the dataset's `labels` and `boxes`.
    """
    rows = []
    for number, detection in enumerate(_attr(msg, "detections")):
        results = list(_attr(detection, "results"))
        if not results:
            raise FieldError(f"detections[{number}]: has no results (no class hypothesis)")
        best = max(results, key=lambda r: float(_attr(_attr(r, "hypothesis"), "score")))
        class_id = _attr(_attr(best, "hypothesis"), "class_id")
        if class_id not in classes:
            raise FieldError(f"detections[{number}]: class {class_id!r} is not one of the model's classes "
                             f"({', '.join(classes)})")
        box = _attr(detection, "bbox")
        position = _attr(_attr(box, "center"), "position")
        rows.append((classes.index(class_id), float(_attr(position, "x")), float(_attr(position, "y")),
                     float(_attr(box, "size_x")), float(_attr(box, "size_y"))))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 1 + BOX_SIZE)


# What entry_reader gives: an entry's values, or an image with how it was fitted into the model's input.
ReadValues = np.ndarray | tuple[np.ndarray, Letterbox]


def entry_reader(entry: FeatureEntry, classes: Sequence[str] = ()) -> Callable[[Any], ReadValues]:
    """What the Aligner takes for an entry, read from one of its messages.

    Fields: the flat values (checked against the entry's size); images:
    ([C, H, W] letterboxed, its Letterbox), so that the Aligner maps the
    sample's boxes, given in the camera's pixels, into the model's input as
    it maps the image; a detection output: [n, 5] rows (label, box) (read_detection).
    """
    if entry.is_image:
        return ImageReader(entry.shape).read_letterboxed
    if entry.is_detection:
        names = tuple(classes)
        return lambda msg: read_detection(msg, names)
    return FieldsReader(entry.fields, entry.size).read
