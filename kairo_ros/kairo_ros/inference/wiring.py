"""From a features description to topics: message types, field readers and writers, QoS.

Fields are read and written by introspection (`get_fields_and_field_types`
and dotted paths), so any message type with numeric fields works without a
hand-written class per type. Readers turn one message into the float32
array a model input takes; writers turn a model output into a message.
Everything is compiled once, when a model's wiring is built, so that the
per-message work is a few attribute reads and one numpy conversion.
"""

from __future__ import annotations

import array
import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from kairo_features.fields import FieldError, FieldsReader, Letterbox
from kairo_features.fields import ImageReader as ImageArrayReader
from kairo_features.schema import FeatureEntry, Features
from kairo_ros.inference.detection import DetectionWriter
from kairo_ros.inference.errors import BadInputError, ConfigError, WiringError

# ROS numeric field types and the array typecode rclpy stores their sequences in.
_TYPECODES = {
    "float": "f", "double": "d",
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
    "boolean": "",  # a Python list of bools, not an array.array
}
_FLOAT_TYPES = ("float", "double")
_SEQUENCE = re.compile(r"^sequence<([^,>]+)(?:,\s*(\d+))?>$")
_ARRAY = re.compile(r"^([^\[]+)\[(\d+)\]$")
_NESTED = re.compile(r"^([A-Za-z0-9_]+)/(?:msg/)?([A-Za-z0-9_]+)$")

INPUT_QOS_CHOICES = ("sensor_data", "reliable")


def import_message_type(type_name: str) -> type:
    """The message class for 'pkg/msg/Name' (or 'pkg/Name'), or WiringError."""
    match = _NESTED.match(type_name.replace("/msg/", "/"))
    if not match:
        raise WiringError(f"message type {type_name!r} must look like pkg/msg/Name")
    package, name = match.groups()
    try:
        module = importlib.import_module(f"{package}.msg")
    except ImportError:
        raise WiringError(f"message type {type_name}: package {package!r} is not installed; "
                          f"install it or source the workspace that builds it") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or not hasattr(cls, "get_fields_and_field_types"):
        raise WiringError(f"message type {type_name}: {package} has no message {name!r}") from None
    return cls


@dataclass(frozen=True)
class FieldPath:
    """One compiled dotted path: the attributes to follow and what is at the end."""

    path: str
    attrs: tuple[str, ...]
    element_type: str        # a key of _TYPECODES
    length: int | None       # None: a scalar; -1: a variable-length sequence; n: a fixed array or bound

    @property
    def is_scalar(self) -> bool:
        return self.length is None

    @property
    def is_variable(self) -> bool:
        return self.length == -1

    def parent(self, msg: Any) -> Any:
        for attr in self.attrs[:-1]:
            msg = getattr(msg, attr)
        return msg

    def get(self, msg: Any) -> Any:
        for attr in self.attrs:
            msg = getattr(msg, attr)
        return msg


def _classify(type_str: str) -> tuple[str, int | None] | None:
    """(element type, length) of a numeric field type string, or None when not numeric."""
    if type_str in _TYPECODES:
        return type_str, None
    seq = _SEQUENCE.match(type_str)
    if seq and seq.group(1) in _TYPECODES:
        # A bounded sequence still varies in length up to its bound.
        return seq.group(1), -1
    arr = _ARRAY.match(type_str)
    if arr and arr.group(1) in _TYPECODES:
        return arr.group(1), int(arr.group(2))
    return None


def compile_field(msg_cls: type, path: str, where: str) -> FieldPath:
    """Check a dotted path against a message class by introspection."""
    cls = msg_cls
    attrs = path.split(".")
    for depth, attr in enumerate(attrs):
        fields: dict[str, str] = cls.get_fields_and_field_types()  # type: ignore[attr-defined]
        if attr not in fields:
            known = ", ".join(sorted(fields))
            raise WiringError(f"{where}: {cls.__name__} has no field {attr!r} (in {path!r}); it has {known}")
        type_str = fields[attr]
        if depth == len(attrs) - 1:
            kind = _classify(type_str)
            if kind is None:
                raise WiringError(f"{where}: field {path!r} of {msg_cls.__name__} is {type_str}, "
                                  f"not a number or a sequence of numbers")
            return FieldPath(path, tuple(attrs), kind[0], kind[1])
        nested = _NESTED.match(type_str)
        if not nested:
            raise WiringError(f"{where}: field {'.'.join(attrs[:depth + 1])!r} of {msg_cls.__name__} "
                              f"is {type_str}, not a message, so {path!r} cannot go into it")
        cls = import_message_type(f"{nested.group(1)}/msg/{nested.group(2)}")
    raise WiringError(f"{where}: empty field path")  # unreachable: paths are non-empty


def _has_header(msg_cls: type) -> bool:
    return msg_cls.get_fields_and_field_types().get("header") == "std_msgs/Header"  # type: ignore[attr-defined]


# --- readers: message -> float32 array of the input's shape (kairo_features reads) ------------------
class FieldReader:
    """Reads numeric fields by their dotted paths and concatenates them.

    The paths are checked against the message class once (compile_field);
    the reading itself is kairo_features', the same the recorder and the
    backend's importer use.
    """

    def __init__(self, entry: FeatureEntry, msg_cls: type) -> None:
        self.entry = entry
        self.msg_cls = msg_cls
        where = f"input {entry.name!r}"
        self.paths = tuple(compile_field(msg_cls, f, where) for f in entry.fields)
        self._read = FieldsReader(entry.fields).read

    def read(self, msg: Any) -> np.ndarray:
        try:
            values = self._read(msg)
        except FieldError as exc:
            raise BadInputError(f"input {self.entry.name!r} on {self.entry.topic}: {exc}") from None
        if values.size != self.entry.size:
            raise BadInputError(
                f"input {self.entry.name!r} on {self.entry.topic}: got {values.size} values from "
                f"{', '.join(self.entry.fields)}; the model takes {self.entry.size} (shape {list(self.entry.shape)})")
        return values.reshape(self.entry.shape)


class ImageReader:
    """sensor_msgs/Image of any size -> float32 [C, H, W] in the model's channel order (RGB or mono), letterboxed.

    `letterbox` is how the image read last was fitted into the model's input
    (kairo_features' Letterbox): the detection writer maps boxes back with it.
    The prediction path reads and writes on one thread, so it is that image's.
    """

    def __init__(self, entry: FeatureEntry, msg_cls: type) -> None:
        self.entry = entry
        self.msg_cls = msg_cls
        self.channels, self.height, self.width = entry.shape
        self._read = ImageArrayReader(entry.shape).read_letterboxed
        self.letterbox: Letterbox | None = None

    def read(self, msg: Any) -> np.ndarray:
        try:
            values, self.letterbox = self._read(msg)
        except FieldError as exc:
            raise BadInputError(f"input {self.entry.name!r} on {self.entry.topic}: {exc}") from None
        return values


# --- writers: model output -> message --------------------------------------------------------------
class FieldWriter:
    """Writes a flat output vector into numeric fields, in order.

    Scalars take one value, fixed arrays their length, and at most one
    variable-length sequence takes what is left.
    """

    def __init__(self, entry: FeatureEntry, msg_cls: type) -> None:
        self.entry = entry
        self.msg_cls = msg_cls
        where = f"output {entry.name!r}"
        self.paths = tuple(compile_field(msg_cls, f, where) for f in entry.fields)
        variable = [p for p in self.paths if p.is_variable]
        fixed = sum(1 if p.is_scalar else int(p.length or 0) for p in self.paths if not p.is_variable)
        if len(variable) > 1:
            raise WiringError(f"{where}: {', '.join(p.path for p in variable)} are all variable-length; "
                              f"an output can fill only one")
        if fixed > entry.size or (not variable and fixed != entry.size):
            raise WiringError(f"{where}: fields {', '.join(entry.fields)} hold {fixed} values"
                              f"{' or more' if variable else ''}; the output has {entry.size}")
        variable_length = entry.size - fixed
        # (path, start, stop) of each field in the flat output, computed once.
        plan, start = [], 0
        for path in self.paths:
            count = 1 if path.is_scalar else (variable_length if path.is_variable else int(path.length or 0))
            plan.append((path, start, start + count))
            start += count
        self._plan = tuple(plan)
        self.header = _has_header(msg_cls)

    def write(self, values: np.ndarray, header: Any = None) -> Any:
        return self.write_into(self.msg_cls(), values, header)

    def write_into(self, msg: Any, values: np.ndarray, header: Any = None) -> Any:
        """Fill `msg` (of `msg_cls`, reused between messages by the prediction path) and return it."""
        flat = values.reshape(-1)
        for path, start, stop in self._plan:
            setattr(path.parent(msg), path.attrs[-1], _field_value(path, flat[start:stop]))
        if self.header and header is not None:
            msg.header = header
        return msg


def _field_value(path: FieldPath, chunk: np.ndarray) -> Any:
    kind = path.element_type
    if path.is_scalar:
        value = chunk[0]
        if kind in _FLOAT_TYPES:
            return float(value)
        if kind == "boolean":
            return bool(value > 0.5)
        return int(np.rint(value))
    if kind == "boolean":
        return [bool(v > 0.5) for v in chunk]
    typecode = _TYPECODES[kind]
    converted = chunk.astype(typecode) if kind in _FLOAT_TYPES else np.rint(chunk).astype(typecode)
    if path.is_variable:
        return array.array(typecode, converted.tobytes())
    return converted  # fixed-size arrays are numpy arrays in rclpy


Reader = FieldReader | ImageReader


@dataclass(frozen=True)
class InputWiring:
    entry: FeatureEntry
    topic: str
    msg_cls: type
    reader: Reader
    has_header: bool


@dataclass(frozen=True)
class OutputWiring:
    entry: FeatureEntry
    topic: str
    msg_cls: type
    writer: FieldWriter | DetectionWriter


@dataclass(frozen=True)
class Wiring:
    """A model's inputs and outputs bound to topics, types, readers and writers."""

    features: Features
    inputs: tuple[InputWiring, ...]
    outputs: tuple[OutputWiring, ...]

    @property
    def primary(self) -> InputWiring:
        return self.inputs[0]


def parse_topic_remaps(remaps: Iterable[str]) -> dict[str, str]:
    """'name:=/topic' items (name: an input or output name, or its default topic) -> mapping."""
    result: dict[str, str] = {}
    for item in remaps:
        name, sep, topic = item.partition(":=")
        name, topic = name.strip(), topic.strip()
        if not sep or not name or not topic:
            raise ConfigError(f"topic_remaps: {item!r} must look like 'joint_positions:=/my_arm/joint_states'")
        result[name] = topic
    return result


# score_threshold: this value means the features' own.
FEATURES_SCORE_THRESHOLD = -1.0


def build_wiring(features: Features, remaps: dict[str, str] | None = None,
                 score_threshold: float = FEATURES_SCORE_THRESHOLD) -> Wiring:
    """Import the message types and compile every reader and writer; WiringError when impossible.

    `score_threshold`: detections scoring below it are not published; negative: the features' value.
    """
    remaps = remaps or {}

    def topic_of(entry: FeatureEntry) -> str:
        return remaps.get(entry.name, remaps.get(entry.topic, entry.topic))

    inputs = []
    for entry in features.inputs:
        cls = import_message_type(entry.msg_type)
        reader: Reader = ImageReader(entry, cls) if entry.is_image else FieldReader(entry, cls)
        inputs.append(InputWiring(entry, topic_of(entry), cls, reader, _has_header(cls)))
    outputs = []
    for entry in features.outputs:
        cls = import_message_type(entry.msg_type)
        writer: FieldWriter | DetectionWriter
        if entry.is_detection:
            image = inputs[0].reader
            if not isinstance(image, ImageReader):
                raise WiringError(f"output {entry.name!r}: detection needs an image input first")
            threshold = score_threshold if score_threshold >= 0 else (features.score_threshold or 0.0)
            writer = DetectionWriter(entry, cls, features.classes, threshold, image)
        else:
            writer = FieldWriter(entry, cls)
        outputs.append(OutputWiring(entry, topic_of(entry), cls, writer))
    return Wiring(features, tuple(inputs), tuple(outputs))


def input_qos(kind: str) -> QoSProfile:
    """sensor_data: best effort, depth 1 (the newest reading wins); reliable: nothing lost.

    Reliable keeps every unread sample (KEEP_ALL): with KEEP_LAST a reader whose
    thread stalls for a moment overwrites samples DDS already delivered, and
    a 200 Hz stream lost a few that way at depth 100 on a busy 2-core machine.
    """
    if kind == "sensor_data":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                          reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
    if kind == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    raise ConfigError(f"input_qos: {kind!r} must be one of {', '.join(INPUT_QOS_CHOICES)}")
