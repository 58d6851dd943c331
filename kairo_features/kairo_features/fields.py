"""Reading a features entry's values out of a message, by dotted field paths.

Works on anything with attributes: rclpy messages, the dataclasses a rosbag
library deserializes into, and plain dicts (e.g. decoded JSON). A path that
names a numeric scalar gives one value, a numeric sequence or array all its
values; an entry's paths are concatenated in order (docs/features.md).

Paths are compiled once (`FieldsReader`), so the per-message work on the
inference node's hot path is one C-level attribute walk and one numpy
conversion per field.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kairo_features.schema import BOX_SIZE, IMAGE_ENCODINGS, FeatureEntry

__all__ = ["FieldError", "FieldsReader", "ImageReader", "entry_reader", "image_to_array", "read_detection",
           "read_field", "read_fields"]

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


def as_float32(value: Any, path: str) -> np.ndarray:
    """A field's value (number, bool, sequence, array.array, numpy array, bytes) as flat float32."""
    if isinstance(value, _BYTES):
        return np.frombuffer(value, dtype=np.uint8).astype(np.float32)
    if value is None or isinstance(value, str):
        raise FieldError(f"field {path!r}: holds {type(value).__name__}, not a number or a sequence of numbers")
    try:
        return np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise FieldError(f"field {path!r}: holds {type(value).__name__}, "
                         f"not a number or a sequence of numbers") from None


def read_field(message: Any, path: str) -> np.ndarray:
    """The values at one dotted path of a message, as a flat float32 array."""
    return FieldPath(path).read(message)


class FieldsReader:
    """Reads an entry's dotted paths and concatenates their values (flat float32).

    `size`, when given, is the number of values the entry takes; another count is a FieldError.
    """

    __slots__ = ("_paths", "_single", "fields", "size")

    def __init__(self, fields: Sequence[str], size: int | None = None) -> None:
        if not fields:
            raise FieldError("an entry reads at least one field")
        self.fields = tuple(fields)
        self.size = size
        self._paths = tuple(FieldPath(f) for f in fields)
        self._single = self._paths[0] if len(self._paths) == 1 else None

    def read(self, msg: Any) -> np.ndarray:
        if self._single is not None:
            values = self._single.read(msg)
        else:
            values = np.concatenate([p.read(msg) for p in self._paths])
        if self.size is not None and values.size != self.size:
            raise FieldError(f"got {values.size} values from {', '.join(self.fields)}; "
                             f"the entry takes {self.size}")
        return values


def read_fields(message: Any, fields: Sequence[str]) -> np.ndarray:
    """The concatenated values of several dotted paths (flat float32)."""
    return FieldsReader(fields).read(message)


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
    msg_height, msg_width, encoding = _attr(msg, "height"), _attr(msg, "width"), _attr(msg, "encoding")
    if msg_height != height or msg_width != width:
        raise FieldError(f"image is {msg_width}x{msg_height}; the model takes {width}x{height}; resize it upstream")
    msg_channels = IMAGE_CHANNELS.get(encoding)
    if msg_channels is None:
        raise FieldError(f"encoding {encoding!r} is not supported; publish one of {', '.join(IMAGE_ENCODINGS)}")
    row = width * msg_channels
    step = _attr(msg, "step") or row
    data = _as_uint8(_attr(msg, "data"))
    if step < row or data.size < step * height:
        raise FieldError(f"{data.size} bytes with step {step} cannot hold a {width}x{height} {encoding} image")
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
