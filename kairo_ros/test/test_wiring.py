"""Wiring by introspection, without ROS processes: message types, readers, writers, images, QoS."""

import array

import numpy as np
import pytest
from geometry_msgs.msg import PointStamped, Twist
from onnx_models import features
from rclpy.qos import HistoryPolicy, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState, LaserScan
from std_msgs.msg import Float64MultiArray, Header

from kairo_features.schema import parse_features
from kairo_interfaces.msg import Detection2DArray, Prediction
from kairo_ros.inference.errors import BadInputError, ConfigError, WiringError
from kairo_ros.inference.wiring import (
    DetectionWriter,
    FieldReader,
    FieldWriter,
    ImageReader,
    build_wiring,
    compile_field,
    import_message_type,
    input_qos,
    parse_topic_remaps,
)


def test_import_message_type() -> None:
    assert import_message_type("sensor_msgs/msg/JointState") is JointState
    assert import_message_type("kairo_interfaces/msg/Detection2DArray") is Detection2DArray
    with pytest.raises(WiringError, match="package 'no_such_msgs' is not installed"):
        import_message_type("no_such_msgs/msg/Thing")
    with pytest.raises(WiringError, match="sensor_msgs has no message 'Nope'"):
        import_message_type("sensor_msgs/msg/Nope")


def test_compile_field_checks_paths() -> None:
    assert compile_field(PointStamped, "point.x", "t").is_scalar
    ranges = compile_field(LaserScan, "ranges", "t")
    assert ranges.is_variable and ranges.element_type == "float"
    with pytest.raises(WiringError, match="Point has no field 'w'"):
        compile_field(PointStamped, "point.w", "input 'target'")
    with pytest.raises(WiringError, match="'name' of JointState is sequence<string>, not a number"):
        compile_field(JointState, "name", "t")
    with pytest.raises(WiringError, match="is float, not a message"):
        compile_field(LaserScan, "range_min.x", "t")


def test_manipulation_reader_and_writer() -> None:
    wiring = build_wiring(parse_features(features("manipulation")))
    joint_state = JointState(position=[0.1, -0.2, 0.3])
    values = wiring.inputs[0].reader.read(joint_state)
    assert values.dtype == np.float32 and values.shape == (3,)
    np.testing.assert_allclose(values, [0.1, -0.2, 0.3], rtol=1e-6)
    point = PointStamped()
    point.point.x, point.point.y, point.point.z = 0.5, -0.25, 9.0
    np.testing.assert_allclose(wiring.inputs[1].reader.read(point), [0.5, -0.25])
    with pytest.raises(BadInputError, match=r"got 2 values from position; the model takes 3 \(shape \[3\]\)"):
        wiring.inputs[0].reader.read(JointState(position=[0.1, 0.2]))
    command = wiring.outputs[0].writer.write(np.array([1.5, 2.5, -3.5], dtype=np.float32))  # type: ignore[call-arg]
    assert isinstance(command, Float64MultiArray) and list(command.data) == [1.5, 2.5, -3.5]
    assert wiring.inputs[0].has_header and not wiring.inputs[0].reader.entry.is_image


def test_navigation_twist_writer() -> None:
    wiring = build_wiring(parse_features(features("navigation")))
    scan = LaserScan(ranges=[float(i) for i in range(64)])
    assert wiring.primary.reader.read(scan)[63] == 63.0
    twist = wiring.outputs[0].writer.write(np.array([0.4, -0.7], dtype=np.float32))  # type: ignore[call-arg]
    assert isinstance(twist, Twist)
    assert twist.linear.x == pytest.approx(0.4) and twist.angular.z == pytest.approx(-0.7)
    assert twist.linear.y == 0.0 and twist.angular.x == 0.0


def test_writer_fills_one_sequence_after_scalars_and_refuses_wrong_sizes() -> None:
    doc = features("manipulation")
    entry = parse_features(doc).outputs[0]
    with pytest.raises(WiringError, match="hold 2 values; the output has 3"):
        FieldWriter(type(entry)(**{**entry.__dict__, "msg_type": "geometry_msgs/msg/Twist",
                                   "fields": ("linear.x", "angular.z")}), Twist)
    reader_entry = type(entry)(**{**entry.__dict__, "fields": ("layout.data_offset", "data"), "shape": (4,)})
    writer = FieldWriter(reader_entry, Float64MultiArray)
    msg = writer.write(np.array([7, 1, 2, 3], dtype=np.float32))
    assert msg.layout.data_offset == 7 and list(msg.data) == [1.0, 2.0, 3.0]
    assert FieldReader(reader_entry, Float64MultiArray).read(msg).tolist() == [7, 1, 2, 3]


def test_detection_writer_maps_rows_into_the_original_image() -> None:
    doc = features("object_detection")
    doc["score_threshold"] = 0.5
    wiring = build_wiring(parse_features(doc))
    reader, writer = wiring.primary.reader, wiring.outputs[0].writer
    assert isinstance(writer, DetectionWriter) and writer.score_threshold == 0.5
    reader.read(_image(np.zeros((720, 1280, 3), np.uint8), "rgb8"))  # letterboxed: scale 1/8, 15 rows above
    header = Header(frame_id="camera")
    header.stamp.sec = 42
    rows = np.zeros((20, 6), np.float32)
    rows[0] = (12.5, 40, 52.5, 85, 0.9, 1)    # -> (100, 200)-(420, 560) in the 1280x720 frame
    rows[1] = (0, 15, 160, 105, 0.6, 3)       # the whole frame
    rows[2] = (10, 20, 30, 40, 0.4, 0)        # below the threshold
    rows[3] = (10, 20, 5, 40, 0.95, 0)        # an empty box
    rows[4] = (10, 20, 30, 40, 0.95, 7)       # no such class
    msg = writer.write(rows, header)
    assert isinstance(msg, Detection2DArray) and msg.header.stamp.sec == 42 and msg.header.frame_id == "camera"
    assert [d.results[0].hypothesis.class_id for d in msg.detections] == ["square", "cross"]
    first, whole = msg.detections
    assert first.header.frame_id == "camera" and first.results[0].hypothesis.score == pytest.approx(0.9)
    position = first.bbox.center.position
    assert (position.x, position.y, first.bbox.size_x, first.bbox.size_y) == pytest.approx((260, 380, 320, 360))
    assert (whole.bbox.center.position.x, whole.bbox.size_x, whole.bbox.size_y) == pytest.approx((640, 1280, 720))
    assert len(build_wiring(parse_features(doc), score_threshold=0.95).outputs[0].writer.write(  # type: ignore[call-arg]
        rows, header).detections) == 0  # the node's score_threshold wins over the features'


def test_detection_writer_refuses_a_type_of_another_shape() -> None:
    detection = parse_features(features("object_detection"))
    reader = build_wiring(detection).primary.reader
    assert isinstance(reader, ImageReader)
    with pytest.raises(WiringError, match=r"output 'detections' .*: Prediction needs a field 'detections'"):
        DetectionWriter(detection.outputs[0], Prediction, detection.classes, 0.3, reader)


def _image(rgb: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """An Image of HxWx3 RGB pixels in `encoding`, rows padded by `pad` bytes."""
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        pixels = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif encoding == "bgra8":
        pixels = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    else:
        pixels = rgb[:, :, :1]
    height, width, channels = pixels.shape
    rows = np.zeros((height, width * channels + pad), np.uint8)
    rows[:, :width * channels] = pixels.reshape(height, -1)
    return Image(height=height, width=width, encoding=encoding, step=width * channels + pad,
                 data=array.array("B", rows.tobytes()))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_images_become_chw_rgb(encoding: str) -> None:
    reader = build_wiring(parse_features(features("object_detection"))).primary.reader
    rgb = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    chw = reader.read(_image(rgb, encoding, pad=3 if encoding == "bgr8" else 0))
    assert chw.dtype == np.float32 and chw.shape == (3, 120, 160)
    np.testing.assert_allclose(chw, rgb.transpose(2, 0, 1) / 255, rtol=1e-6)


def test_mono_image_fills_three_channels() -> None:
    reader = build_wiring(parse_features(features("object_detection"))).primary.reader
    rgb = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    chw = reader.read(_image(rgb, "mono8"))
    for channel in range(3):
        np.testing.assert_allclose(chw[channel], rgb[:, :, 0] / 255, rtol=1e-6)


def test_camera_sizes_are_letterboxed() -> None:
    reader = build_wiring(parse_features(features("object_detection"))).primary.reader
    assert isinstance(reader, ImageReader)
    chw = reader.read(_image(np.zeros((480, 640, 3), np.uint8), "bgr8"))
    assert chw.shape == (3, 120, 160) and reader.letterbox is not None and reader.letterbox.scale_x == 0.25
    chw = reader.read(_image(np.zeros((16, 32, 3), np.uint8), "rgb8"))  # wider: grey bands above and below
    assert chw.shape == (3, 120, 160) and (reader.letterbox.pad_x, reader.letterbox.pad_y) == (0, 20)
    assert chw[:, :20].min() == pytest.approx(114 / 255) and chw[:, 20:100].max() == 0


def test_bad_images_are_refused() -> None:
    reader = build_wiring(parse_features(features("object_detection"))).primary.reader
    image = _image(np.zeros((32, 32, 3), np.uint8), "rgb8")
    image.encoding = "32FC1"  # a depth image
    with pytest.raises(BadInputError, match="encoding '32FC1' is not supported"):
        reader.read(image)
    short = _image(np.zeros((32, 32, 3), np.uint8), "rgb8")
    short.data = short.data[:100]
    with pytest.raises(BadInputError, match="100 bytes with step 96 cannot hold"):
        reader.read(short)


def test_topic_remaps() -> None:
    remaps = parse_topic_remaps(["joint_positions:=/arm/joint_states", "/cmd_vel:=/robot/cmd_vel"])
    wiring = build_wiring(parse_features(features("manipulation")), remaps)
    assert wiring.inputs[0].topic == "/arm/joint_states" and wiring.inputs[1].topic == "/target_point"
    nav = build_wiring(parse_features(features("navigation")), remaps)
    assert nav.outputs[0].topic == "/robot/cmd_vel"
    with pytest.raises(ConfigError, match="topic_remaps: 'joint_positions=/x' must look like"):
        parse_topic_remaps(["joint_positions=/x"])


def test_input_qos() -> None:
    sensor = input_qos("sensor_data")
    assert sensor.reliability == ReliabilityPolicy.BEST_EFFORT and sensor.depth == 1
    assert input_qos("reliable").reliability == ReliabilityPolicy.RELIABLE
    assert input_qos("reliable").history == HistoryPolicy.KEEP_ALL  # nothing overwritten while unread
    with pytest.raises(ConfigError, match="input_qos: 'fast' must be one of sensor_data, reliable"):
        input_qos("fast")
