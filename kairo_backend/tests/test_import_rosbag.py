"""rosbag2 recordings into datasets (POST /v1/datasets and `kairo-backend datasets import`).

The recordings are written here by an independent writer (rosbags' Writer, MCAP and
SQLite3 storage) with known input -> output pairs; the imported arrays must equal them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from conftest import Server, cli, wait_run
from kairo_backend.core.config import Settings
from kairo_backend.errors import PayloadTooLarge
from kairo_backend.store import Store
from kairo_backend.training.datasets import load_arrays
from kairo_backend.training.recordings import import_dataset

TYPES = get_typestore(Stores.ROS2_JAZZY)
JOINT_STATE = "sensor_msgs/msg/JointState"
POINT_STAMPED = "geometry_msgs/msg/PointStamped"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
STRING = "std_msgs/msg/String"
BASE_NS = 1_760_000_000_000_000_000
PERIOD_NS = 50_000_000
TRIGGERS = 40
NO_COMMAND = 7  # this trigger gets no command: dropped as missing_output

FEATURES: dict[str, Any] = {
    "schema": "kairo.features/1", "task": "manipulation",
    "inputs": [
        {"name": "joint_positions", "topic": "/joint_states", "type": JOINT_STATE,
         "fields": ["position"], "shape": [3]},
        {"name": "target", "topic": "/target_point", "type": POINT_STAMPED,
         "fields": ["point.x", "point.y"], "shape": [2]},
    ],
    "outputs": [
        {"name": "joint_commands", "topic": "/arm_controller/commands", "type": FLOAT_ARRAY,
         "fields": ["data"], "shape": [3]},
    ],
    "tolerance": 0.05,
}
EXPECTED_DROPPED = {"missing_input:target": 1, "missing_output:joint_commands": 1}


def _header(stamp_ns: int) -> Any:
    time = TYPES.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                       nanosec=stamp_ns % 10**9)
    return TYPES.types["std_msgs/msg/Header"](stamp=time, frame_id="base")


def _cdr(msg: Any) -> bytes:
    return bytes(TYPES.serialize_cdr(msg, msg.__msgtype__))


def write_bag(path: Path, storage: StoragePlugin) -> dict[str, np.ndarray]:
    """A manipulation recording; the arrays its aligned samples must give.

    Trigger i (JointState, header stamp t_i, logged 1 ms later) follows a target
    (PointStamped, stamped t_i - 2 ms) and precedes a command (Float64MultiArray, no
    header: its log time t_i + 4 ms). Trigger 0 comes before any target, trigger
    NO_COMMAND gets no command; a String topic the features do not use is ignored.
    """
    types = TYPES.types
    expected: dict[str, list[Any]] = {"joint_positions": [], "target": [],
                                      "joint_commands": []}
    with Writer(path, version=9, storage_plugin=storage) as writer:
        joints = writer.add_connection("/joint_states", JOINT_STATE, typestore=TYPES)
        targets = writer.add_connection("/target_point", POINT_STAMPED, typestore=TYPES)
        commands = writer.add_connection("/arm_controller/commands", FLOAT_ARRAY,
                                         typestore=TYPES)
        chatter = writer.add_connection("/chatter", STRING, typestore=TYPES)
        for i in range(TRIGGERS):
            t = BASE_NS + i * PERIOD_NS
            position = np.array([0.01 * i, -0.02 * i, 0.5 + i], dtype=np.float64)
            point = (0.1 * i, 1.0 - 0.03 * i)
            command = np.array([i, -2.0 * i, 0.25 * i], dtype=np.float64)
            if i > 0:
                writer.write(targets, t - 2_000_000, _cdr(types[POINT_STAMPED](
                    header=_header(t - 2_000_000),
                    point=types["geometry_msgs/msg/Point"](x=point[0], y=point[1], z=9.0))))
            writer.write(joints, t + 1_000_000, _cdr(types[JOINT_STATE](
                header=_header(t), name=["a", "b", "c"], position=position,
                velocity=np.zeros(3), effort=np.zeros(0))))
            writer.write(chatter, t + 2_000_000, _cdr(types[STRING](data=f"tick {i}")))
            if i != NO_COMMAND:
                layout = types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
                writer.write(commands, t + 4_000_000, _cdr(types[FLOAT_ARRAY](
                    layout=layout, data=command)))
            if i > 0 and i != NO_COMMAND:
                expected["joint_positions"].append(position)
                expected["target"].append(point)
                expected["joint_commands"].append(command)
    return {k: np.asarray(v, dtype=np.float32) for k, v in expected.items()}


def zip_of(directory: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(directory.iterdir()):
            zf.write(f, f"{directory.name}/{f.name}")
    return buf.getvalue()


def tar_gz_of(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(directory, arcname=directory.name)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bags")
    mcap_expected = write_bag(root / "arm_mcap", StoragePlugin.MCAP)
    sqlite_expected = write_bag(root / "arm_sqlite", StoragePlugin.SQLITE3)
    for name, array in mcap_expected.items():
        assert np.array_equal(array, sqlite_expected[name])
    return {"root": root, "expected": mcap_expected, "mcap_dir": root / "arm_mcap",
            "sqlite_dir": root / "arm_sqlite",
            "mcap_file": next((root / "arm_mcap").glob("*.mcap"))}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("kairo-import")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(srv: Server) -> Iterator[httpx.Client]:
    key = cli(srv.data_dir, "keys", "create", "--workspace", "rec")
    with srv.client(key) as client:
        yield client


def upload(api: httpx.Client, name: str, data: bytes,
           features: dict[str, Any] | None = None) -> httpx.Response:
    return api.post("/v1/datasets", files={"file": (name, data)},
                    data={"features": json.dumps(features or FEATURES), "name": name},
                    timeout=120)


def stored(srv: Server, ds_id: str) -> dict[str, np.ndarray]:
    return load_arrays(srv.data_dir / "datasets" / f"{ds_id}.npz")


def assert_imported(srv: Server, api: httpx.Client, ds_id: str, expected: dict[str, np.ndarray],
                    storage: str) -> dict[str, Any]:
    ds = api.get(f"/v1/datasets/{ds_id}").json()
    assert ds["samples"] == len(expected["target"]) == TRIGGERS - 2
    assert ds["dropped"] == EXPECTED_DROPPED
    source = ds["source"]
    assert source["kind"] == "rosbag2" and source["storage"] == storage
    assert {t["topic"]: (t["type"], t["messages"]) for t in source["topics"]} == {
        "/joint_states": (JOINT_STATE, TRIGGERS), "/target_point": (POINT_STAMPED, TRIGGERS - 1),
        "/arm_controller/commands": (FLOAT_ARRAY, TRIGGERS - 1), "/chatter": (STRING, TRIGGERS)}
    assert source["messages"] == 4 * TRIGGERS - 2
    first, last = BASE_NS - 2_000_000 + PERIOD_NS, BASE_NS + (TRIGGERS - 1) * PERIOD_NS + 4_000_000
    assert source["start_ns"] == BASE_NS + 1_000_000  # trigger 0, logged 1 ms after its stamp
    assert first > source["start_ns"] and source["end_ns"] == last
    arrays = stored(srv, ds_id)
    assert sorted(arrays) == sorted(expected)
    for name, array in expected.items():
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], array, err_msg=name)
    listed = {d["id"]: d for d in api.get("/v1/datasets").json()["data"]}
    assert listed[ds_id]["source"] == source and listed[ds_id]["dropped"] == EXPECTED_DROPPED
    return ds


def test_zipped_mcap_bag_imports_through_the_api(srv: Server, api: httpx.Client,
                                                 bags: dict[str, Any]) -> None:
    r = upload(api, "arm_mcap.zip", zip_of(bags["mcap_dir"]))
    assert r.status_code == 201, r.text
    ds = assert_imported(srv, api, r.json()["id"], bags["expected"], "mcap")
    assert ds["name"] == "arm_mcap.zip" and ds["source"]["file"] == "arm_mcap.zip"


def test_single_mcap_file_imports_through_the_api(srv: Server, api: httpx.Client,
                                                  bags: dict[str, Any]) -> None:
    r = upload(api, "arm.mcap", bags["mcap_file"].read_bytes())
    assert r.status_code == 201, r.text
    assert_imported(srv, api, r.json()["id"], bags["expected"], "mcap")


def test_sqlite3_bag_tar_gz_imports_through_the_api(srv: Server, api: httpx.Client,
                                                    bags: dict[str, Any]) -> None:
    r = upload(api, "arm_sqlite.tar.gz", tar_gz_of(bags["sqlite_dir"]))
    assert r.status_code == 201, r.text
    assert_imported(srv, api, r.json()["id"], bags["expected"], "sqlite3")


def test_cli_imports_a_bag_directory_and_an_mcap_file(srv: Server, api: httpx.Client,
                                                      bags: dict[str, Any]) -> None:
    features = bags["root"] / "features.json"
    features.write_text(json.dumps(FEATURES))
    for path, storage in ((bags["sqlite_dir"], "sqlite3"), (bags["mcap_file"], "mcap")):
        ds_id = cli(srv.data_dir, "datasets", "import", str(path), "--features", str(features),
                    "--workspace", "rec")
        assert ds_id.startswith("ds_")
        assert_imported(srv, api, ds_id, bags["expected"], storage)


def _leftovers(srv: Server) -> set[str]:
    return {p.name for p in (srv.data_dir / "datasets").iterdir()}


def _bad_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        body = b"rosbag2_bagfile_information: {}\n"
        info = tarfile.TarInfo("bag/../../metadata.yaml")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _zip_with_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bag/metadata.yaml", "rosbag2_bagfile_information: {}\n")
        link = zipfile.ZipInfo("bag/bag_0.mcap")
        link.external_attr = (0o120777 << 16)  # a symbolic link, to a file of the server
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


def _unknown_type_bag(root: Path) -> tuple[bytes, dict[str, Any]]:
    path = root / "gripper_bag"
    if not path.exists():
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            # an IDL-less, definition-less custom type, as a recorder without its package writes it
            conn = writer.add_connection("/gripper", "acme_msgs/msg/Gripper", msgdef="",
                                         rihs01="RIHS01_" + "0" * 64)
            out = writer.add_connection("/cmd", FLOAT_ARRAY, typestore=TYPES)
            layout = TYPES.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
            for i in range(20):
                writer.write(conn, BASE_NS + i * PERIOD_NS, b"\x00\x01\x00\x00" + bytes(8))
                writer.write(out, BASE_NS + i * PERIOD_NS + 1000, _cdr(
                    TYPES.types[FLOAT_ARRAY](layout=layout, data=np.zeros(1))))
    features = {"task": "manipulation", "tolerance": 0.1,
                "inputs": [{"name": "width", "topic": "/gripper", "type": "acme_msgs/msg/Gripper",
                            "fields": ["width"], "shape": [1]}],
                "outputs": [{"name": "cmd", "topic": "/cmd", "type": FLOAT_ARRAY,
                             "fields": ["data"], "shape": [1]}]}
    return next(path.glob("*.mcap")).read_bytes(), features


def test_bad_recordings_get_a_clear_4xx_and_leave_nothing(srv: Server, api: httpx.Client,
                                                          bags: dict[str, Any]) -> None:
    before_ids = {d["id"] for d in api.get("/v1/datasets").json()["data"]}
    before_files = _leftovers(srv)
    mcap = bags["mcap_file"].read_bytes()
    unknown, unknown_features = _unknown_type_bag(bags["root"])
    cases = [
        ("truncated.mcap", mcap[: len(mcap) // 2], None, ("damaged or truncated",)),
        ("garbage.zip", b"PK\x03\x04" + bytes(range(256)) * 8, None, ("npz",)),
        ("dotdot.tar.gz", _bad_tar(), None, ("'..'",)),
        ("link.zip", _zip_with_symlink(), None, ("bag/bag_0.mcap", "not a regular file")),
        ("gripper.mcap", unknown, unknown_features, ("acme_msgs/msg/Gripper", "cannot be decoded")),
        ("wrong_topic.zip", zip_of(bags["mcap_dir"]),
         {**FEATURES, "outputs": [{**FEATURES["outputs"][0], "topic": "/nowhere"}]},
         ("/nowhere", "not in the recording")),
        ("only.db3", next(bags["sqlite_dir"].glob("*.db3")).read_bytes(), None,
         ("metadata.yaml",)),
    ]
    for name, data, features, words in cases:
        r = upload(api, name, data, features)
        assert r.status_code == 422, (name, r.status_code, r.text)
        body = r.json()["error"]
        assert body["code"] == "validation_error"
        for word in words:
            assert word in body["message"], (name, body["message"])
        assert "Traceback" not in body["message"]
    assert {d["id"] for d in api.get("/v1/datasets").json()["data"]} == before_ids
    assert _leftovers(srv) == before_files


def test_cli_refuses_a_truncated_recording_in_one_line(srv: Server, bags: dict[str, Any],
                                                       tmp_path: Path) -> None:
    truncated = tmp_path / "cut.mcap"
    mcap = bags["mcap_file"].read_bytes()
    truncated.write_bytes(mcap[: len(mcap) * 2 // 3])
    features = tmp_path / "features.json"
    features.write_text(json.dumps(FEATURES))
    before = _leftovers(srv)
    out = subprocess.run([sys.executable, "-m", "kairo_backend", "datasets", "import",
                          str(truncated), "--features", str(features), "--workspace", "rec",
                          "--data-dir", str(srv.data_dir)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged or truncated" in lines[0], out.stderr
    assert "ds_" not in out.stdout and _leftovers(srv) == before


def test_the_limits_refuse_a_recording_with_413_and_leave_nothing(bags: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    """--max-samples, and --max-dataset-mb on the samples and on an archive's extraction
    (the importer the route and the CLI share, with a server's settings)."""
    cases = [({"max_dataset_samples": 20}, bags["mcap_dir"], "--max-samples"),
             ({"max_dataset_mb": 0.0005}, bags["mcap_file"], "--max-dataset-mb"),
             ({"max_dataset_mb": 0.01}, io.BytesIO(zip_of(bags["mcap_dir"])), "once extracted")]
    for i, (limits, source, words) in enumerate(cases):
        settings = Settings(data_dir=tmp_path / f"data{i}", **limits)
        settings.ensure_dirs()
        store = Store(settings.db_path)
        ws = store.ensure_workspace("limits")
        with pytest.raises(PayloadTooLarge, match=words):
            import_dataset(settings, store, ws, "too big", source, FEATURES, file_name="bag")
        assert store.list_datasets(ws) == []
        assert list(settings.datasets_dir.iterdir()) == []


def detection(t: Any, class_id: str, score: float, box: tuple[float, ...]) -> Any:
    """A kairo_interfaces Detection2D (vision_msgs' shape) with one hypothesis."""
    k = "kairo_interfaces/msg/"
    pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                         orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                                      w=1.0)),
        covariance=np.zeros(36))
    return t[k + "Detection2D"](
        header=_header(0), id="",
        results=[t[k + "ObjectHypothesisWithPose"](
            hypothesis=t[k + "ObjectHypothesis"](class_id=class_id, score=score), pose=pose)],
        bbox=t[k + "BoundingBox2D"](center=t[k + "Pose2D"](position=t[k + "Point2D"](x=box[0], y=box[1]),
                                                         theta=0.0),
                                    size_x=box[2], size_y=box[3]))


def write_detection_bag(path: Path, classes: list[str]) -> dict[str, np.ndarray]:
    """Images and their detections (a kairo_interfaces type the backend does not know: the
    bag holds its definition), the detection stamped with its image's header stamp."""
    from rosbags.typesys import get_types_from_msg

    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = Path(__file__).resolve().parents[2] / "kairo_interfaces" / "msg"
    for name in ("Point2D", "Pose2D", "BoundingBox2D", "ObjectHypothesis", "ObjectHypothesisWithPose",
                 "Detection2D", "Detection2DArray"):
        store.register(get_types_from_msg((msg_dir / f"{name}.msg").read_text(),
                                          f"kairo_interfaces/msg/{name}"))
    t = store.types
    rng = np.random.default_rng(3)
    expected: dict[str, list[Any]] = {"image": [], "labels": [], "boxes": []}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        images = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        detections = writer.add_connection("/detections", "kairo_interfaces/msg/Detection2DArray",
                                           typestore=store)
        for i in range(15):
            stamp = BASE_NS + i * PERIOD_NS
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            label = i % len(classes)
            box = (4.0 + i, 5.0, 6.0, 7.0 + i)
            writer.write(images, stamp + 3_000_000, bytes(store.serialize_cdr(t["sensor_msgs/msg/Image"](
                header=_header(stamp), height=32, width=32, encoding="rgb8", is_bigendian=0, step=96,
                data=pixels.reshape(-1)), "sensor_msgs/msg/Image")))
            other = (0.0, 0.0, 1.0, 1.0)
            found = [detection(t, classes[(label + 1) % len(classes)], 0.2, other),
                     detection(t, classes[label], 0.9, box)]
            writer.write(detections, stamp + 9_000_000, bytes(store.serialize_cdr(
                t["kairo_interfaces/msg/Detection2DArray"](header=_header(stamp), detections=found),
                "kairo_interfaces/msg/Detection2DArray")))
            expected["image"].append(pixels.transpose(2, 0, 1) / 255)  # the reader gives [0, 1]
            expected["labels"].append([(label + 1) % len(classes), label])  # every detection
            expected["boxes"].append([other, box])
    return {"image": np.asarray(expected["image"], dtype=np.float32),
            "labels": np.asarray(expected["labels"], dtype=np.int64),
            "boxes": np.asarray(expected["boxes"], dtype=np.float32)}


def test_detection_recording_with_its_own_definitions_imports(srv: Server, api: httpx.Client,
                                                              tmp_path: Path) -> None:
    classes = ["circle", "square", "triangle"]
    features = {"task": "object_detection", "classes": classes,
                "inputs": [{"name": "image", "topic": "/camera/image_raw",
                            "type": "sensor_msgs/msg/Image", "fields": ["data"],
                            "shape": [3, 32, 32], "encoding": "rgb8"}],
                "outputs": [{"name": "detections", "topic": "/detections",
                             "type": "kairo_interfaces/msg/Detection2DArray", "fields": [],
                             "shape": [7]}]}
    expected = write_detection_bag(tmp_path / "shapes", classes)
    r = upload(api, "shapes.zip", zip_of(tmp_path / "shapes"), features)
    assert r.status_code == 201, r.text
    assert r.json()["samples"] == 15 and r.json()["dropped"] == {}
    arrays = stored(srv, r.json()["id"])
    assert sorted(arrays) == sorted(expected)
    for name, array in expected.items():
        assert arrays[name].dtype == array.dtype, name
        np.testing.assert_allclose(arrays[name], array, rtol=1e-6, err_msg=name)


def test_training_on_an_imported_dataset_completes(api: httpx.Client,
                                                   bags: dict[str, Any]) -> None:
    r = upload(api, "train_me.zip", zip_of(bags["mcap_dir"]))
    assert r.status_code == 201, r.text
    run = api.post("/v1/models/train", json={
        "dataset_id": r.json()["id"], "robot_id": "rob_recorded", "task": "manipulation",
        "config": {"epochs": 3}})
    assert run.status_code == 202, run.text
    done = wait_run(api, run.json()["model_id"], run.json()["run_id"])
    assert done["status"] == "complete", done
    assert done["metrics"]["epochs_run"] == 3
