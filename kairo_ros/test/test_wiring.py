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
from kairo_interfaces.msg import Detection2DArray
from kairo_ros.inference.errors import BadInputError, ConfigError, WiringError
from kairo_ros.inference.wiring import (
    FieldReader,
    FieldWriter,
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


def test_detection_writer_takes_the_best_class() -> None:
    wiring = build_wiring(parse_features(features("object_detection")))
    header = Header(frame_id="camera")
    header.stamp.sec = 42
    msg = wiring.outputs[0].writer.write(np.array([0.1, 0.7, 0.2], np.float32),  # type: ignore[call-arg]
                                         np.array([10, 12, 8, 9], np.float32), header)
    assert isinstance(msg, Detection2DArray) and msg.header.stamp.sec == 42 and msg.header.frame_id == "camera"
    (detection,) = msg.detections
    assert detection.class_id == "square" and detection.score == pytest.approx(0.7)
    assert (detection.bbox.center_x, detection.bbox.center_y, detection.bbox.size_x, detection.bbox.size_y) \
        == (10, 12, 8, 9)


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
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    chw = reader.read(_image(rgb, encoding, pad=3 if encoding == "bgr8" else 0))
    assert chw.dtype == np.float32 and chw.shape == (3, 32, 32)
    np.testing.assert_array_equal(chw, rgb.transpose(2, 0, 1).astype(np.float32))


def test_mono_image_fills_three_channels() -> None:
    reader = build_wiring(parse_features(features("object_detection"))).primary.reader
    rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    chw = reader.read(_image(rgb, "mono8"))
    for channel in range(3):
        np.testing.assert_array_equal(chw[channel], rgb[:, :, 0].astype(np.float32))


def test_bad_images_are_refused() -> None:
    reader = build_wiring(parse_features(features("object_detection"))).primary.reader
    rgb = np.zeros((16, 32, 3), np.uint8)
    with pytest.raises(BadInputError, match="image is 32x16; the model takes 32x32"):
        reader.read(_image(rgb, "rgb8"))
    image = _image(np.zeros((32, 32, 3), np.uint8), "rgb8")
    image.encoding = "yuv422"
    with pytest.raises(BadInputError, match="encoding 'yuv422' is not supported"):
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
