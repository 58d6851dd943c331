"""Reading an entry's values from messages by dotted path: objects with attributes, dataclasses, dicts."""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kairo_features.fields import (
    IMAGE_LAYOUTS,
    LETTERBOX_FILL,
    FieldError,
    FieldsReader,
    ImageReader,
    Letterbox,
    entry_reader,
    image_to_array,
    letterbox_for,
    read_detection,
    read_field,
    read_fields,
)
from kairo_features.schema import IMAGE_ENCODINGS, parse_features
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


def _image(encoding: str, pixels: np.ndarray, pad: int = 0, big_endian: bool = False) -> SimpleNamespace:
    """A sensor_msgs/Image-shaped object; `pad` bytes of row padding (step > width * bytes per pixel)."""
    height, width = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if big_endian else "<u2")
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=padded.shape[1],
                           is_bigendian=int(big_endian), data=array.array("B", padded.tobytes()))


RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 5  # H=2, W=3
OPAQUE = np.full((2, 3, 1), 255, np.uint8)


def test_every_encoding_the_schema_names_is_read() -> None:
    assert tuple(IMAGE_LAYOUTS) == IMAGE_ENCODINGS


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize(("encoding", "pixels"), [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.concatenate([RGB, OPAQUE], axis=2)),
    ("bgra8", np.concatenate([RGB[:, :, ::-1], OPAQUE], axis=2)),
])
def test_images_convert_to_rgb_chw_in_0_1(encoding: str, pixels: np.ndarray, pad: int) -> None:
    out = image_to_array(_image(encoding, np.ascontiguousarray(pixels), pad), (3, 2, 3))
    assert out.dtype == np.float32 and out.shape == (3, 2, 3)
    np.testing.assert_allclose(out, RGB.transpose(2, 0, 1) / 255, rtol=1e-6)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize(("encoding", "order"), [("rgb16", [0, 1, 2]), ("bgr16", [2, 1, 0]),
                                                 ("rgba16", [0, 1, 2, 3]), ("bgra16", [2, 1, 0, 3])])
def test_16_bit_images_honour_is_bigendian(encoding: str, order: list[int], big_endian: bool) -> None:
    deep = RGB.astype(np.uint16) * 257 + 3  # uses both bytes
    rgba = np.concatenate([deep, np.full((2, 3, 1), 65535, np.uint16)], axis=2)
    out = image_to_array(_image(encoding, rgba[:, :, order], pad=2, big_endian=big_endian), (3, 2, 3))
    np.testing.assert_allclose(out, deep.transpose(2, 0, 1) / 65535, rtol=1e-6)


@pytest.mark.parametrize(("encoding", "order"), [("yuv422", (1, 0, 3, 2)), ("yuv422_yuy2", (0, 1, 2, 3))])
def test_yuv422_images_become_rgb(encoding: str, order: tuple[int, int, int, int]) -> None:
    """Pairs of pixels of one colour, encoded by BT.601 video range, come back as that colour (to rounding)."""
    colours = np.array([[200, 30, 40], [20, 180, 60], [30, 60, 220], [128, 128, 128], [250, 250, 250], [5, 5, 5]],
                       np.float64)
    r, g, b = colours.T
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    pair = np.stack([y, u, y, v], axis=1)[:, order]  # Y0 U Y1 V, reordered into the encoding's byte order
    data = np.rint(pair).astype(np.uint8).reshape(1, -1).repeat(2, axis=0)  # 2 rows of 12 pixels
    msg = SimpleNamespace(height=2, width=12, encoding=encoding, step=24, is_bigendian=0, data=data.tobytes())
    out = image_to_array(msg, (3, 2, 12))
    expected = colours.repeat(2, axis=0).T[:, None, :].repeat(2, axis=1) / 255
    np.testing.assert_allclose(out, expected, atol=3 / 255)
    odd = SimpleNamespace(height=2, width=11, encoding=encoding, step=24, data=data.tobytes())
    with pytest.raises(FieldError, match=f"a {encoding} image is 11 pixels wide; .* must be even"):
        image_to_array(odd, (3, 2, 12))


def test_mono_images() -> None:
    mono = np.array([[0, 10, 20], [30, 40, 50]], np.uint8)
    msg = _image("mono8", mono[:, :, None])
    np.testing.assert_allclose(image_to_array(msg, (1, 2, 3))[0], mono / 255, rtol=1e-6)
    np.testing.assert_allclose(image_to_array(msg, (3, 2, 3)), np.repeat(mono[None] / 255, 3, axis=0), rtol=1e-6)
    luma = image_to_array(_image("rgb8", RGB), (1, 2, 3))
    expected = RGB.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    assert luma.shape == (1, 2, 3) and np.allclose(luma[0], expected)
    deep = mono.astype(np.uint16) * 1000
    msg16 = _image("mono16", deep[:, :, None], big_endian=True)
    np.testing.assert_allclose(image_to_array(msg16, (1, 2, 3))[0], deep / 65535, rtol=1e-6)


def test_image_as_dict_with_numpy_data() -> None:
    msg = {"height": 2, "width": 3, "encoding": "rgb8", "step": 0, "data": RGB.reshape(-1)}
    np.testing.assert_allclose(image_to_array(msg, (3, 2, 3)), RGB.transpose(2, 0, 1) / 255, rtol=1e-6)


def _area_reference(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area averaging by definition: repeat every pixel `new` times per axis, then average runs of `old`."""
    old_h, old_w = pixels.shape[:2]
    fine = np.repeat(np.repeat(pixels.astype(np.float64), height, axis=0), width, axis=1)
    return fine.reshape(height, old_h, width, old_w, -1).mean(axis=(1, 3))


def test_a_640x480_camera_frame_is_averaged_into_the_model_input() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    sent_as = {"rgb8": pixels, "bgr8": pixels[:, :, ::-1], "rgba8": np.dstack([pixels, pixels[:, :, :1]])}
    for encoding, sent in sent_as.items():
        out, box = ImageReader((3, 120, 160)).read_letterboxed(_image(encoding, np.ascontiguousarray(sent), pad=64))
        assert box == Letterbox(640, 480, 0.25, 0.25, 0, 0), encoding
        expected = pixels.reshape(120, 4, 160, 4, 3).mean(axis=(1, 3)).transpose(2, 0, 1) / 255
        np.testing.assert_allclose(out, expected, atol=1e-6, err_msg=encoding)


@pytest.mark.parametrize(("width", "height", "inner", "pad"), [
    (16, 8, (8, 4), (0, 1)),   # wider than the model: bands above and below
    (6, 9, (4, 6), (2, 0)),    # taller: bands left and right
    (21, 12, (8, 5), (0, 0)),  # a ratio that is no whole number; the odd row left over goes below
])
def test_other_sizes_are_letterboxed_with_the_aspect_kept(width: int, height: int, inner: tuple[int, int],
                                                          pad: tuple[int, int]) -> None:
    shape = (3, 6, 8)
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out, box = ImageReader(shape).read_letterboxed(_image("rgb8", pixels))
    (inner_w, inner_h), (pad_x, pad_y) = inner, pad
    assert (box.pad_x, box.pad_y) == pad
    assert box.scale_x == pytest.approx(inner_w / width) and box.scale_y == pytest.approx(inner_h / height)
    assert box.scale_x == pytest.approx(min(8 / width, 6 / height), rel=0.1)
    inside = out[:, pad_y:pad_y + inner_h, pad_x:pad_x + inner_w]
    np.testing.assert_allclose(inside, _area_reference(pixels, inner_h, inner_w).transpose(2, 0, 1) / 255, atol=1e-5)
    band = np.ones(out.shape, bool)
    band[:, pad_y:pad_y + inner_h, pad_x:pad_x + inner_w] = False
    assert band.any() == (inner != (8, 6)) and np.all(out[band] == np.float32(LETTERBOX_FILL))


def test_small_images_are_enlarged_bilinearly() -> None:
    pixels = np.array([[0, 100]], np.uint8)[:, :, None].repeat(2, axis=0)  # 2x2 mono: left 0, right 100
    out = image_to_array(_image("mono8", pixels), (1, 4, 4))
    # pixel centres at +0.5: 4 outputs over 2 inputs sample at 0, 0.25, 0.75, 1 (clamped at the edges)
    np.testing.assert_allclose(out[0] * 255, np.tile([0, 25, 75, 100], (4, 1)), atol=1e-4)


def test_boxes_map_back_to_the_original_pixels() -> None:
    box = letterbox_for(1280, 720, (3, 120, 160))
    assert box == Letterbox(1280, 720, 0.125, 0.125, 0, 15)
    original = np.array([[100.0, 200.0, 420.0, 560.0], [0.0, 0.0, 1280.0, 720.0]])
    model = box.to_input(original)
    np.testing.assert_allclose(model, [[12.5, 40.0, 52.5, 85.0], [0, 15, 160, 105]])
    np.testing.assert_allclose(box.to_original(model), original)
    # a box reaching into the grey band is clipped to the image
    np.testing.assert_allclose(box.to_original(np.array([-5.0, 5.0, 170.0, 110.0])), [[0, 0, 1280, 720]])
    # what is drawn in a frame lands where to_input says
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[200:560, 96:416] = 255
    out = image_to_array(_image("rgb8", frame), (3, 120, 160))
    x1, y1, x2, y2 = box.to_input(np.array([96.0, 200.0, 416.0, 560.0]))[0].astype(int)
    assert np.all(out[:, y1:y2, x1:x2] == 1.0) and out[:, y1 - 1, x1:x2].max() < 1 and out[:, 15:105, x2].max() < 1


@pytest.mark.parametrize(("change", "problem"), [
    ({"encoding": "32FC1"}, r"^encoding '32FC1' is not supported; publish one of rgb8, bgr8"),
    ({"data": b"\x00" * 10}, r"^10 bytes with step 9 cannot hold a 3x2 rgb8 image"),
    ({"step": 4}, r"^.* bytes with step 4 cannot hold"),
    ({"width": 0}, r"^image is 0x2; it needs at least one pixel"),
])
def test_bad_images(change: dict[str, Any], problem: str) -> None:
    msg = _image("rgb8", RGB)
    vars(msg).update(change)
    with pytest.raises(FieldError, match=problem):
        image_to_array(msg, (3, 2, 3))


def _detections(*items: tuple[str, float], second: str = "") -> dict[str, Any]:
    """A Detection2DArray (vision_msgs' shape) as a dict, one detection per (class, score)."""
    def hypothesis(class_id: str, score: float) -> dict[str, Any]:
        return {"hypothesis": {"class_id": class_id, "score": score}, "pose": {}}

    return {"detections": [
        {"results": [hypothesis(c, s)] + ([hypothesis(second, s / 2)] if second else []),
         "bbox": {"center": {"position": {"x": 10.0 + i, "y": 11.0}, "theta": 0.0}, "size_x": 4.0 + s, "size_y": 5.0},
         "id": ""}
        for i, (c, s) in enumerate(items)]}


def test_detection_reads_every_detection_with_its_class_index() -> None:
    classes = ("circle", "square", "triangle")
    values = read_detection(_detections(("circle", 0.2), ("triangle", 0.9), second="square"), classes)
    assert values.dtype == np.float32 and values.shape == (2, 5)
    np.testing.assert_allclose(values, [[0, 10, 11, 4.2, 5], [2, 11, 11, 4.9, 5]], rtol=1e-6)
    assert read_detection(_detections(), classes).shape == (0, 5)  # an image with nothing in it
    with pytest.raises(FieldError, match=r"detections\[0\]: class 'hexagon' is not one of the model's classes"):
        read_detection(_detections(("hexagon", 1.0)), classes)
    empty = {"detections": [{"results": [], "bbox": {}, "id": ""}]}
    with pytest.raises(FieldError, match=r"detections\[0\]: has no results"):
        read_detection(empty, classes)


def test_entry_readers_follow_the_features() -> None:
    manipulation = parse_features(default_features("manipulation"))
    target = entry_reader(manipulation.entry("target"))
    assert target(PointStamped(Point(1, 2, 3))).tolist() == [1, 2]
    commands = entry_reader(manipulation.entry("joint_commands"))
    with pytest.raises(FieldError, match="the entry takes 3"):
        commands(SimpleNamespace(data=array.array("d", [1.0, 2.0])))
    detection = parse_features(default_features("object_detection"))
    image = entry_reader(detection.trigger)
    # an image comes with the Letterbox that fitted it, for the Aligner to map the sample's boxes
    same, fitted = image(_image("rgb8", np.zeros((120, 160, 3), np.uint8))), image(
        _image("bgr8", np.zeros((480, 640, 3), np.uint8)))
    assert isinstance(same, tuple) and isinstance(fitted, tuple)
    assert same[0].shape == fitted[0].shape == IMAGE_SHAPE
    assert (same[1].scale_x, fitted[1].scale_x) == (1.0, 0.25)
    boxes = entry_reader(detection.outputs[0], detection.classes)
    assert boxes(_detections(("square", 0.5))).tolist()[0][0] == 1


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
