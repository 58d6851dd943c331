"""Logic without a server."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from kairo_backend.core import security
from kairo_backend.core.config import Settings
from kairo_backend.errors import ValidationFailed
from kairo_backend.jobs.estimate import estimate_duration_s
from kairo_backend.store import Store
from kairo_backend.training.config import TrainConfig
from kairo_backend.training.datasets import check_arrays, check_features, load_arrays
from kairo_backend.training.demo import arm_fk, arm_step, make_demo, nav_rule
from kairo_features.schema import FeaturesError
from kairo_features.tasks import default_features


@pytest.mark.parametrize("task", ["manipulation", "navigation", "object_detection"])
def test_demo_is_deterministic_and_valid(task: str) -> None:
    a1, f = make_demo(task, 50, seed=3)
    a2, _ = make_demo(task, 50, seed=3)
    a3, _ = make_demo(task, 50, seed=4)
    assert check_arrays(a1, check_features(f)) == 50
    for k in a1:
        assert np.array_equal(a1[k], a2[k])
    assert any(not np.array_equal(a1[k], a3[k]) for k in a1)


def test_arm_step_moves_toward_target() -> None:
    rng = np.random.default_rng(0)
    q = rng.uniform(-1, 1, (200, 3))
    target = arm_fk(q + rng.normal(0, 0.3, (200, 3)))
    before = np.linalg.norm(arm_fk(q) - target, axis=1)
    qn = q
    for _ in range(30):
        qn = arm_step(qn, target)
    after = np.linalg.norm(arm_fk(qn) - target, axis=1)
    assert np.median(after) < 0.1 * np.median(before)
    assert np.abs(arm_step(q, target) - q).max() <= 0.2 + 1e-9


def test_arm_step_in_a_closed_loop_tracks_a_moving_target_within_the_joint_ranges() -> None:
    q = np.array([[0.3, 0.6, 0.3]])
    errors, joints = [], []
    for tick in range(1000):  # 20 s at 50 Hz, a target circling at 0.12 m/s
        phase = 2 * np.pi * tick / 400
        target = np.array([[0.45 + 0.15 * np.cos(phase), 0.25 + 0.15 * np.sin(phase)]])
        q = arm_step(q, target)
        errors.append(float(np.linalg.norm(arm_fk(q) - target)))
        joints.append(q[0].copy())
    assert max(errors[100:]) < 0.03
    peak = np.abs(np.array(joints)).max(axis=0)
    assert peak[0] < np.pi / 2 and peak[1:].max() < 2.0  # inside the dataset's joint ranges


def test_nav_rule_slows_near_obstacles_and_turns_to_open_side() -> None:
    open_scan = np.full((1, 64), 6.0)
    wall = open_scan.copy()
    ang = -np.pi + np.arange(64) * 2 * np.pi / 64
    wall[0, np.abs(ang) < 0.6] = 0.3
    assert nav_rule(open_scan)[0, 0] == pytest.approx(0.5, abs=1e-6)
    assert nav_rule(wall)[0, 0] < 0.05
    left_open = np.full((1, 64), 1.0)
    left_open[0, (ang > 0.5) & (ang < 1.6)] = 5.0
    assert nav_rule(left_open)[0, 1] > 0.3


def test_features_validation_names_the_field() -> None:
    f = default_features("manipulation")
    f["inputs"][0]["shape"] = [0]
    with pytest.raises(ValidationFailed, match=r"features.inputs\[0\].shape"):
        check_features(f)
    f = default_features("navigation")
    del f["tolerance"]
    with pytest.raises(ValidationFailed, match="tolerance"):
        check_features(f)
    with pytest.raises(FeaturesError, match="task"):
        default_features("juggling")


def test_dataset_shape_mismatch() -> None:
    arrays, f = make_demo("manipulation", 20)
    arrays["target"] = arrays["target"][:, :1]
    with pytest.raises(ValidationFailed, match="file.target"):
        check_arrays(arrays, f)
    with pytest.raises(ValidationFailed, match="npz"):
        load_arrays(b"not a zip")
    buf = io.BytesIO()
    np.savez(buf, joint_positions=np.zeros((20, 3)))
    with pytest.raises(ValidationFailed, match="missing"):
        check_arrays(load_arrays(buf.getvalue()), f)


def test_train_config_defaults_and_ranges() -> None:
    c = TrainConfig.from_request({"epochs": 0, "learning_rate": None})
    assert (c.epochs, c.learning_rate, c.batch_size) == (20, 1e-3, 64)
    with pytest.raises(ValidationFailed, match="config.epochs"):
        TrainConfig.from_request({"epochs": 5000})
    with pytest.raises(ValueError, match="workers"):
        Settings(workers=0)


def test_signed_links() -> None:
    secret = b"s" * 32
    exp = int(time.time()) + 60
    sig = security.sign(secret, "mdl_a_v1.onnx", exp)
    assert security.verify(secret, "mdl_a_v1.onnx", exp, sig, time.time())
    assert not security.verify(secret, "mdl_a_v2.onnx", exp, sig, time.time())
    assert not security.verify(secret, "mdl_a_v1.onnx", exp + 1, sig, time.time())
    assert not security.verify(secret, "mdl_a_v1.onnx", exp, sig, exp + 1)
    key = security.new_api_key()
    assert key.startswith("kai_live_") and security.hash_key(key) != key


def test_store_queue_is_fifo_and_estimates_use_measurements(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "k.db")
    ws = store.ensure_workspace("w")
    assert store.workspace_for_key(store.create_key("w")) == ws
    ids = []
    for i in range(3):
        res = store.submit_run(ws, robot_id="rob_1", task="navigation", name=None,
                               dataset_id="ds_x", architecture="mlp",
                               config={"epochs": 1, "learning_rate": 1e-3, "batch_size": 8},
                               samples=100, estimated_duration_s=1.0, max_queued=10)
        assert res is not None
        run, pos = res
        assert pos == i + 1 and run["version"] == f"v{i + 1}"
        ids.append(run["id"])
    claimed = store.claim_next_run()
    assert claimed is not None and claimed["id"] == ids[0]
    store.record_throughput("navigation/mlp", 1000.0, 2.0, weight=1.0)
    assert estimate_duration_s(store, "navigation", "mlp", 500, 10) == pytest.approx(7.0)


def test_a_run_taken_over_ignores_its_earlier_attempt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A worker's writes are fenced by its attempt (the run's interruptions when claimed): once the
    run was re-queued and claimed again, the earlier attempt's progress, failure and artifact go
    nowhere, and an artifact is put in place only by the attempt whose completion is recorded."""
    store = Store(tmp_path / "k.db")
    ws = store.ensure_workspace("w")
    res = store.submit_run(ws, robot_id="rob_1", task="navigation", name=None, dataset_id="ds_x",
                           architecture="mlp", config={"epochs": 1, "learning_rate": 1e-3, "batch_size": 8},
                           samples=100, estimated_duration_s=1.0, max_queued=10)
    assert res is not None
    first = store.claim_next_run()
    assert first is not None and first["interruptions"] == 0
    assert store.set_progress(first["id"], {"epoch": 1}, "epoch 1", attempt=0)
    assert store.requeue_run(first["id"], "re-queued: its replica stopped answering", attempt=0)
    assert not store.requeue_run(first["id"], "re-queued twice", attempt=0)
    second = store.claim_next_run()
    assert second is not None and second["id"] == first["id"] and second["interruptions"] == 1
    published: list[int] = []
    assert not store.set_progress(first["id"], {"epoch": 2}, "stale epoch", attempt=0)
    assert not store.finish_run(first["id"], "failed", error="stale", only_from=("running",), attempt=0)
    assert not store.finish_run(first["id"], "complete", only_from=("running",), attempt=0,
                                publish=lambda: published.append(0))
    assert not store.requeue_run(first["id"], "stale re-queue", attempt=0)
    assert store.set_progress(first["id"], {"epoch": 1}, "epoch 1", attempt=1)

    def broken_publish() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):  # the artifact could not be put in place: nothing recorded
        store.finish_run(first["id"], "complete", only_from=("running",), attempt=1, publish=broken_publish)
    assert store.get_run(first["id"])["status"] == "running"
    assert store.finish_run(first["id"], "complete", only_from=("running",), attempt=1,
                            publish=lambda: published.append(1))
    assert published == [1]
    run = store.get_run(first["id"])
    assert run["status"] == "complete" and run["interruptions"] == 1
    logs = [row["line"] for row in store.run_logs(first["id"])]
    assert logs.count("epoch 1") == 2 and "stale epoch" not in logs and "stale" not in logs
    store.close()
