"""Reading an entry's values from messages by dotted path: objects with attributes, dataclasses, dicts."""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kairo_features.fields import (
    FieldError,
    FieldsReader,
    entry_reader,
    image_to_array,
    read_detection,
    read_field,
    read_fields,
)
from kairo_features.schema import parse_features
from kairo_features.tasks import IMAGE_SHAPE, default_features


# Shaped like the dataclasses a rosbag library deserializes CDR into.
@dataclass
class Point:
    x: float
    y: float
    z: float


@dataclass
class PointStamped:
    point: Point
    frame_id: str = "map"


@dataclass
class JointState:
    position: np.ndarray
    name: list[str] = field(default_factory=lambda: ["a", "b", "c"])


def test_scalars_sequences_and_nested_paths() -> None:
    msg = PointStamped(Point(1.5, -2.0, 3.0))
    assert read_field(msg, "point.x").tolist() == [1.5]
    assert read_field(msg, "point.x").dtype == np.float32
    assert read_fields(msg, ["point.x", "point.y"]).tolist() == [1.5, -2.0]
    joints = JointState(np.array([0.1, 0.2, 0.3]))
    assert np.allclose(read_field(joints, "position"), [0.1, 0.2, 0.3])


@pytest.mark.parametrize("value", [
    array.array("d", [1.0, 2.0, 3.0]),   # rclpy: variable-length float64 sequence
    array.array("i", [1, 2, 3]),
    np.array([1, 2, 3], dtype=np.uint8),  # rclpy fixed arrays, rosbags sequences
    [1, 2, 3],
    (1.0, 2.0, 3.0),
    bytes([1, 2, 3]),                     # octet sequences
    bytearray([1, 2, 3]),
])
def test_sequence_kinds(value: Any) -> None:
    values = read_field(SimpleNamespace(data=value), "data")
    assert values.dtype == np.float32 and values.tolist() == [1.0, 2.0, 3.0]


def test_bools_and_ints_are_numbers() -> None:
    msg = SimpleNamespace(flag=True, count=7, flags=[True, False])
    assert read_fields(msg, ["flag", "count", "flags"]).tolist() == [1.0, 7.0, 1.0, 0.0]


def test_dicts_and_mixed() -> None:
    msg = {"point": {"x": 1, "y": 2}, "ranges": [0.5, 0.25]}
    assert read_fields(msg, ["point.y", "ranges"]).tolist() == [2.0, 0.5, 0.25]
    mixed = SimpleNamespace(pose={"position": Point(4, 5, 6)})
    assert read_field(mixed, "pose.position.z").tolist() == [6.0]


@pytest.mark.parametrize(("msg", "path", "problem"), [
    (PointStamped(Point(1, 2, 3)), "point.w", r"field 'point\.w': PointStamped has no such field"),
    (PointStamped(Point(1, 2, 3)), "frame_id", r"field 'frame_id': holds str, not a number"),
    (PointStamped(Point(1, 2, 3)), "point", r"field 'point': holds Point, not a number"),
    (JointState(np.zeros(3)), "name", r"field 'name': holds list, not a number"),
    ({"a": None}, "a", r"field 'a': holds NoneType"),
    ({"a": 1}, "b", r"field 'b': dict has no such field"),
    ({"a": 1}, "a.b", r"field 'a\.b': dict has no such field"),
])
def test_errors_name_the_path(msg: Any, path: str, problem: str) -> None:
    with pytest.raises(FieldError, match=f"^{problem}"):
        read_field(msg, path)


def test_bad_paths_and_sizes() -> None:
    with pytest.raises(FieldError, match="must be names separated by dots"):
        read_field(SimpleNamespace(a=1), "a..b")
    with pytest.raises(FieldError, match="at least one field"):
        FieldsReader([])
    reader = FieldsReader(["ranges"], size=4)
    assert reader.read(SimpleNamespace(ranges=[1, 2, 3, 4])).shape == (4,)
    with pytest.raises(FieldError, match="^got 3 values from ranges; the entry takes 4"):
        reader.read(SimpleNamespace(ranges=[1, 2, 3]))


def test_reader_returns_a_new_array_each_time() -> None:
    reader = FieldsReader(["a", "b"], size=2)
    first = reader.read({"a": 1, "b": 2})
    second = reader.read({"a": 3, "b": 4})
    assert first.tolist() == [1, 2] and second.tolist() == [3, 4]


def _image(encoding: str, pixels: np.ndarray, pad: int = 0) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=padded.shape[1],
                           data=array.array("B", padded.tobytes()))


RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 5  # H=2, W=3


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize(("encoding", "pixels"), [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.concatenate([RGB, np.full((2, 3, 1), 255, np.uint8)], axis=2)),
    ("bgra8", np.concatenate([RGB[:, :, ::-1], np.full((2, 3, 1), 255, np.uint8)], axis=2)),
])
def test_images_convert_to_rgb_chw(encoding: str, pixels: np.ndarray, pad: int) -> None:
    out = image_to_array(_image(encoding, np.ascontiguousarray(pixels), pad), (3, 2, 3))
    assert out.dtype == np.float32 and out.shape == (3, 2, 3)
    assert np.array_equal(out, RGB.transpose(2, 0, 1).astype(np.float32))


def test_mono_images() -> None:
    mono = np.array([[0, 10, 20], [30, 40, 50]], np.uint8)
    msg = _image("mono8", mono[:, :, None])
    assert np.array_equal(image_to_array(msg, (1, 2, 3))[0], mono)
    assert np.array_equal(image_to_array(msg, (3, 2, 3)), np.repeat(mono[None].astype(np.float32), 3, axis=0))
    luma = image_to_array(_image("rgb8", RGB), (1, 2, 3))
    expected = RGB.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert luma.shape == (1, 2, 3) and np.allclose(luma[0], expected)


def test_image_as_dict_with_numpy_data() -> None:
    msg = {"height": 2, "width": 3, "encoding": "rgb8", "step": 0, "data": RGB.reshape(-1)}
    assert np.array_equal(image_to_array(msg, (3, 2, 3)), RGB.transpose(2, 0, 1))


@pytest.mark.parametrize(("change", "problem"), [
    ({"width": 4}, r"^image is 4x2; the model takes 3x2; resize it upstream"),
    ({"encoding": "yuv422"}, r"^encoding 'yuv422' is not supported; publish one of rgb8, bgr8"),
    ({"data": b"\x00" * 10}, r"^10 bytes with step 9 cannot hold a 3x2 rgb8 image"),
    ({"step": 4}, r"^.* bytes with step 4 cannot hold"),
])
def test_bad_images(change: dict[str, Any], problem: str) -> None:
    msg = _image("rgb8", RGB)
    vars(msg).update(change)
    with pytest.raises(FieldError, match=problem):
        image_to_array(msg, (3, 2, 3))


def _detections(*items: tuple[str, float]) -> dict[str, Any]:
    return {"detections": [{"class_id": c, "score": s, "bbox": {"center_x": 10.0, "center_y": 11.0,
                                                                   "size_x": 4.0 + s, "size_y": 5.0}}
                           for c, s in items]}


def test_detection_takes_the_best_and_its_class_index() -> None:
    classes = ("circle", "square", "triangle")
    values = read_detection(_detections(("circle", 0.2), ("triangle", 0.9)), classes)
    assert values.tolist() == pytest.approx([2, 10, 11, 4.9, 5])
    with pytest.raises(FieldError, match="no detection"):
        read_detection(_detections(), classes)
    with pytest.raises(FieldError, match="class 'hexagon' is not one of the model's classes"):
        read_detection(_detections(("hexagon", 1.0)), classes)


def test_entry_readers_follow_the_features() -> None:
    manipulation = parse_features(default_features("manipulation"))
    target = entry_reader(manipulation.entry("target"))
    assert target(PointStamped(Point(1, 2, 3))).tolist() == [1, 2]
    commands = entry_reader(manipulation.entry("joint_commands"))
    with pytest.raises(FieldError, match="the entry takes 3"):
        commands(SimpleNamespace(data=array.array("d", [1.0, 2.0])))
    detection = parse_features(default_features("object_detection"))
    image = entry_reader(detection.trigger)
    assert image(_image("rgb8", np.zeros((120, 160, 3), np.uint8))).shape == IMAGE_SHAPE
    boxes = entry_reader(detection.outputs[0], detection.classes)
    assert boxes(_detections(("square", 0.5))).tolist()[0] == 1


# REP 117 -------------------------------------------------------------------------------------------
@dataclass
class LaserScan:  # the fields of sensor_msgs/LaserScan a reader sees, as a rosbag library gives them
    ranges: np.ndarray
    range_min: float = 0.1
    range_max: float = 10.0
    intensities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(("ranges", "expected"), [
    ([1.0, INF, 2.0, -INF], [1.0, 10.0, 2.0, 0.1]),
    ([3.0, NAN, 2.0], [3.0, 2.0, 2.0]),            # NaN: the nearer valid neighbour
    ([NAN, NAN, 4.0, 5.0, NAN], [4.0, 4.0, 4.0, 5.0, 5.0]),  # ends: the one side there is
    ([2.0, NAN, NAN, 6.0], [2.0, 2.0, 2.0, 6.0]),
    ([INF, NAN, 1.5], [10.0, 1.5, 1.5]),           # neighbours after the Inf substitution
    ([-INF, NAN, INF], [0.1, 0.1, 10.0]),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
    ([25.0, 0.0], [25.0, 0.0]),                    # finite readings are left as they are
])
def test_laser_scan_follows_rep117(ranges: list[float], expected: list[float]) -> None:
    values = np.array(ranges, dtype=np.float32)
    msg = LaserScan(values.copy())
    got = FieldsReader(["ranges"], len(ranges)).read(msg)
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))
    np.testing.assert_array_equal(msg.ranges, values)  # the message itself is left alone
    # the same from rclpy's array.array, a plain object, a dict, and one path among others
    as_sequence = SimpleNamespace(ranges=array.array("f", ranges), range_min=0.1, range_max=10.0)
    np.testing.assert_array_equal(FieldsReader(["ranges"]).read(as_sequence), got)
    as_dict = {"ranges": list(ranges), "range_min": 0.1, "range_max": 10.0}
    np.testing.assert_array_equal(read_field(as_dict, "ranges"), got)
    both = FieldsReader(["range_max", "ranges"], len(ranges) + 1).read(msg)
    np.testing.assert_array_equal(both, np.concatenate([[10.0], got]).astype(np.float32))


def test_rep117_on_nested_scans_and_range_messages() -> None:
    stamped = SimpleNamespace(scan=LaserScan(np.array([INF, 1.0, NAN], np.float32), 0.2, 8.0))
    assert read_field(stamped, "scan.ranges").tolist() == [8.0, 1.0, 1.0]
    sonar = SimpleNamespace(range=INF, min_range=0.02, max_range=4.0)  # sensor_msgs/Range
    assert read_field(sonar, "range").tolist() == [4.0]
    sonar.range = -INF
    assert read_field(sonar, "range").tolist() == [pytest.approx(0.02)]
    sonar.range = NAN  # one reading: no neighbour to take
    assert np.isnan(read_field(sonar, "range")).all()


def test_rep117_leaves_what_it_cannot_infer() -> None:
    # no valid reading at all: nothing to infer NaN from; the guard or the aligner drops it
    all_invalid = FieldsReader(["ranges"]).read(LaserScan(np.full(4, NAN, np.float32)))
    assert np.isnan(all_invalid).all()
    # a message without range bounds is no range sensor: its values are what they are
    other = read_field(SimpleNamespace(ranges=[1.0, INF, NAN]), "ranges")
    assert other[0] == 1.0 and other[1] == INF and np.isnan(other[2])
    assert np.isinf(read_field(SimpleNamespace(data=[INF]), "data")).all()


@pytest.mark.parametrize("position", [0, 31, 63])
@pytest.mark.parametrize("bad", [INF, -INF, NAN])
def test_every_non_finite_reading_is_seen(position: int, bad: float) -> None:
    ranges = np.full(64, 3.0, np.float32)
    ranges[position] = bad
    got = FieldsReader(["ranges"], 64).read(LaserScan(ranges))
    assert np.isfinite(got).all()
    assert got[position] == {INF: 10.0, -INF: np.float32(0.1)}.get(bad, 3.0)


def test_huge_finite_readings_are_kept() -> None:
    ranges = np.array([3e38, 1.0], np.float32)  # v.v overflows; the slow path must change nothing
    np.testing.assert_array_equal(FieldsReader(["ranges"]).read(LaserScan(ranges)), ranges)


def test_rep117_among_scalar_fields() -> None:
    sonar = SimpleNamespace(range=INF, min_range=0.02, max_range=4.0, field_of_view=0.5)
    assert FieldsReader(["field_of_view", "range"], 2).read(sonar).tolist() == [0.5, 4.0]
