"""Model checks and the cache, without ROS processes: real onnxruntime on small real ONNX files."""

import json
import pathlib

import numpy as np
import onnxruntime as ort
import pytest
from onnx_models import features, linear_model, metadata_for

from kairo_features.schema import parse_features
from kairo_ros.api import Model
from kairo_ros.inference.errors import CacheIntegrityError, ConfigError, ModelRejectedError, NoModelError
from kairo_ros.inference.model_session import ModelSession, resolve_providers, sha256_of_file
from kairo_ros.inference.model_source import ModelCache, VersionRef, promoted_last


def load(path: pathlib.Path, **kwargs) -> ModelSession:  # type: ignore[no-untyped-def]
    return ModelSession.load(path, ["CPUExecutionProvider"], 1, **kwargs)


def test_loads_checks_and_runs(tmp_path: pathlib.Path) -> None:
    path = linear_model(features("manipulation"), tmp_path / "m.onnx", model_id="mdl_abc", version="v4")
    model = load(path)
    assert (model.identity.model_id, model.identity.version) == ("mdl_abc", "v4")
    assert model.identity.sha256 == sha256_of_file(path) and model.provider == "CPUExecutionProvider"
    feeds = {"joint_positions": np.array([[0.1, 0.2, 0.3]], np.float32), "target": np.array([[0.4, 0.5]], np.float32)}
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_allclose(model.run(feeds)[0], reference[0], rtol=1e-6)


def test_detection_model_outputs(tmp_path: pathlib.Path) -> None:
    model = load(linear_model(features("object_detection"), tmp_path / "d.onnx"))
    (rows,) = model.run({"image": np.full((1, 3, 120, 160), 0.5, np.float32)})
    assert model.output_names == ["detections"] and rows.shape == (1, 20, 6)
    assert (rows[0, :, 4] >= 0).all() and (rows[0, :, 4] <= 1).all()


def test_detection_model_with_other_rows_is_refused(tmp_path: pathlib.Path) -> None:
    doc = features("object_detection")
    doc["max_detections"] = 5
    path = linear_model(doc, tmp_path / "five.onnx")  # its graph gives 5 rows and says so
    assert load(path).run({"image": np.zeros((1, 3, 120, 160), np.float32)})[0].shape == (1, 5, 6)
    twenty = linear_model(features("object_detection"), tmp_path / "twenty.onnx",
                          metadata=metadata_for(doc, "mdl_test", "v1"))  # 20 rows, the features say 5
    with pytest.raises(ModelRejectedError, match=r"output 'detections' has shape \['batch', 20, 6\]; the wiring "
                                                 r"needs \[batch, 5, 6\]"):
        load(twenty)


def test_not_onnx_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelRejectedError, match=r"model\.onnx is not a loadable ONNX model .*point model_path at"):
        load(path)
    with pytest.raises(ModelRejectedError, match="cannot read it"):
        load(tmp_path / "missing.onnx")


def test_model_without_features_is_refused(tmp_path: pathlib.Path) -> None:
    path = linear_model(features("navigation"), tmp_path / "n.onnx", metadata={})
    with pytest.raises(ModelRejectedError, match="has no features description"):
        load(path)


def test_graph_not_matching_its_wiring_is_refused(tmp_path: pathlib.Path) -> None:
    path = linear_model(features("manipulation"), tmp_path / "m.onnx", graph_shapes={"joint_positions": [4]})
    with pytest.raises(ModelRejectedError, match=r"input 'joint_positions' has shape \['batch', 4\]; the wiring "
                                                 r"needs \[batch, 3\]"):
        load(path)
    renamed = features("navigation")
    path = linear_model(renamed, tmp_path / "n.onnx")
    renamed["inputs"][0]["name"] = "lidar"
    linear_model(features("navigation"), path, metadata={
        "kairo.features": json.dumps(renamed), "kairo.task": "navigation"})
    with pytest.raises(ModelRejectedError, match="graph input.* scan are not in the wiring"):
        load(path)


def test_new_version_must_keep_the_wiring(tmp_path: pathlib.Path) -> None:
    serving = parse_features(features("manipulation"))
    other = features("manipulation")
    other["inputs"][1]["topic"] = "/elsewhere"
    with pytest.raises(ModelRejectedError, match="wires different topics"):
        load(linear_model(other, tmp_path / "m.onnx"), expected=serving)
    assert load(linear_model(features("manipulation"), tmp_path / "ok.onnx"), expected=serving)


def test_file_must_be_the_version_asked_for(tmp_path: pathlib.Path) -> None:
    path = linear_model(features("navigation"), tmp_path / "n.onnx", model_id="mdl_a", version="v1")
    with pytest.raises(ModelRejectedError, match="metadata says mdl_a v1, but mdl_a v2 was asked for"):
        load(path, model_id="mdl_a", version="v2")


def test_providers() -> None:
    assert resolve_providers([])[-1] == "CPUExecutionProvider"
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="providers: 'cuda' is not available in this onnxruntime"):
            resolve_providers(["cuda"])


def test_cache_last_good_and_tampering(tmp_path: pathlib.Path) -> None:
    warnings: list[str] = []
    cache = ModelCache(tmp_path / "cache", warnings.append)
    with pytest.raises(NoModelError, match="nothing cached"):
        cache.last_good("mdl_x")
    ref = VersionRef("mdl_x", "v2", "")
    path = linear_model(features("navigation"), cache.file_for(ref), model_id="mdl_x", version="v2")
    ref = VersionRef("mdl_x", "v2", sha256_of_file(path))
    cache.record_good("mdl_x", ref)
    assert cache.verified(ref) == path
    good = cache.last_good("mdl_x")
    assert good.ref == ref and good.from_cache
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cache.verified(ref) is None
    assert "refusing it and downloading it again" in warnings[0]
    with pytest.raises(CacheIntegrityError, match=r"has sha256 .*recorded .*it was altered, so it is refused"):
        cache.last_good("mdl_x")
    path.unlink()
    with pytest.raises(CacheIntegrityError, match="is missing"):
        cache.last_good("mdl_x")


def test_robot_and_task_serve_the_model_promoted_last() -> None:
    # As GET /v1/models lists them: the older model was promoted last, the newer one had a run
    # submitted after that promotion, which moved its updated_at past it.
    older = Model.from_json({
        "id": "mdl_older", "task": "navigation", "robot_id": "rob_1", "active_version": "v1",
        "created_at": "2026-03-01T09:00:00Z", "updated_at": "2026-03-02T10:00:05Z",
        "promotions": [{"at": "2026-03-02T10:00:05Z", "from": None, "to": "v1"}]})
    newer = Model.from_json({
        "id": "mdl_newer", "task": "navigation", "robot_id": "rob_1", "active_version": "v2",
        "created_at": "2026-03-02T09:00:00Z", "updated_at": "2026-03-02T11:30:00Z",
        "promotions": [{"at": "2026-03-02T09:10:00Z", "from": None, "to": "v1"},
                       {"at": "2026-03-02T10:00:00Z", "from": "v1", "to": "v2"}]})
    assert promoted_last([newer, older]).id == "mdl_older"
    assert promoted_last([older, newer]).id == "mdl_older"
    never = Model.from_json({"id": "mdl_never", "task": "navigation", "robot_id": "rob_1",
                             "created_at": "2026-03-03T00:00:00Z", "updated_at": "2026-03-03T00:00:00Z"})
    assert promoted_last([never, newer]).id == "mdl_newer"


def test_bound_runs_follow_each_new_input(tmp_path: pathlib.Path) -> None:
    # Runs reuse bound input and output buffers: each run must still see its own input.
    path = linear_model(features("navigation"), tmp_path / "n.onnx", seed=4)
    model = load(path)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for _ in range(5):
        scan = rng.uniform(0, 5, (1, 64)).astype(np.float32)
        np.testing.assert_allclose(model.run({"scan": scan})[0], reference.run(None, {"scan": scan})[0], rtol=1e-5)
