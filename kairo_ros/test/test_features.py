"""One features contract on both sides: the robot reads real rclpy messages with kairo_features,
and every model the backend trains loads on the robot.

The parser's own cases live in kairo_features/test; these are the checks
that need rclpy message classes, the real trainer (torch) and the robot's
model loader (onnxruntime).
"""

from __future__ import annotations

import array
import json
import pathlib

import numpy as np
import onnx
import pytest
from geometry_msgs.msg import PointStamped, Twist
from sensor_msgs.msg import Image, Imu, JointState, LaserScan
from std_msgs.msg import Bool, Float64MultiArray

from kairo_features.fields import FieldError, FieldsReader, ImageReader, read_field
from kairo_features.schema import META_FEATURES, features_from_metadata, parse_features
from kairo_features.tasks import TASKS, default_features
from kairo_ros.inference.model_session import ModelSession


def test_rclpy_sequences_arrays_and_scalars() -> None:
    joints = JointState(position=[0.1, 0.2, 0.3])
    assert isinstance(joints.position, array.array)
    assert np.allclose(read_field(joints, "position"), [0.1, 0.2, 0.3])
    target = PointStamped()
    target.point.x, target.point.y = 1.5, -2.5
    assert FieldsReader(["point.x", "point.y"], 2).read(target).tolist() == [1.5, -2.5]
    imu = Imu()
    imu.orientation_covariance[4] = 7.0  # a fixed float64[9]: a numpy array in rclpy
    assert read_field(imu, "orientation_covariance").tolist()[4] == 7.0
    assert read_field(Bool(data=True), "data").tolist() == [1.0]
    assert read_field(Float64MultiArray(data=[1.0, 2.0]), "data").dtype == np.float32
    scan = LaserScan(ranges=[float(i) for i in range(64)])
    assert FieldsReader(["ranges"], 64).read(scan).tolist() == list(range(64))
    twist = Twist()
    twist.linear.x, twist.angular.z = 0.5, -0.25
    assert FieldsReader(["linear.x", "angular.z"], 2).read(twist).tolist() == [0.5, -0.25]


def test_rclpy_errors_name_the_field() -> None:
    with pytest.raises(FieldError, match=r"^field 'point\.w': PointStamped has no such field"):
        read_field(PointStamped(), "point.w")
    with pytest.raises(FieldError, match=r"^field 'name': holds list, not a number"):
        read_field(JointState(name=["a"]), "name")
    with pytest.raises(FieldError, match=r"^field 'header\.frame_id': holds str"):
        read_field(PointStamped(), "header.frame_id")
    with pytest.raises(FieldError, match="got 2 values from position; the entry takes 3"):
        FieldsReader(["position"], 3).read(JointState(position=[0.0, 1.0]))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_rclpy_images(encoding: str) -> None:
    channels = 1 if encoding == "mono8" else 3
    pixels = np.arange(4 * 5 * channels, dtype=np.uint8).reshape(4, 5, channels)
    msg = Image(height=4, width=5, encoding=encoding, step=5 * channels, data=pixels.tobytes())
    out = ImageReader((3, 4, 5)).read(msg)
    rgb = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[:, :, ::-1] if encoding == "bgr8" else pixels
    assert out.shape == (3, 4, 5)
    np.testing.assert_allclose(out, rgb.transpose(2, 0, 1) / 255, rtol=1e-6)  # RGB in [0, 1]


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """One model per task, trained for one epoch by the backend's real trainer and exported as it exports."""
    from kairo_backend.training.config import TrainConfig
    from kairo_backend.training.demo import make_demo
    from kairo_backend.training.export import export_onnx
    from kairo_backend.training.nets import resolve_architecture
    from kairo_backend.training.trainer import fit, prepare

    models = {}
    for task in TASKS:
        arrays, features = make_demo(task, samples=64)
        setup = prepare(arrays, features, resolve_architecture(None, task), TrainConfig(epochs=1, batch_size=32),
                        device="cpu")
        fit(setup)
        path = tmp_path_factory.mktemp(task) / "model.onnx"
        export_onnx(setup.wrapper, path, model_id="mdl_contract", version="v1")
        models[task] = path
    return models


@pytest.mark.parametrize("task", TASKS)
def test_every_model_the_backend_trains_loads_on_the_robot(task: str, trained_models: dict[str, pathlib.Path]) -> None:
    path = trained_models[task]
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    features = features_from_metadata(metadata)
    # the training envelope (docs/features.md, "Envelope") is the one addition; images and detections carry none
    assert all((e.range is None) == (e.is_image or e.is_detection) for e in features.entries)
    without_envelope = features.to_document()
    for entry in without_envelope["inputs"] + without_envelope["outputs"]:
        entry.pop("range", None)
    assert parse_features(without_envelope) == parse_features(default_features(task))
    assert json.loads(metadata[META_FEATURES]) == features.to_document()
    session = ModelSession.load(path, ["CPUExecutionProvider"], 1)  # the robot's checks, graph included
    assert session.features == features and session.identity.model_id == "mdl_contract"
