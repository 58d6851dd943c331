"""The hot-swap core without ROS: swap, rollback, refused versions and concurrent promotions,
with real onnxruntime sessions of small real ONNX files and no DDS."""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest
from onnx_models import features, linear_model

from kairo_features.schema import Features
from kairo_ros.inference import model_server
from kairo_ros.inference.model_server import ModelServer, ServerEvent, session_loader
from kairo_ros.inference.model_session import ModelSession
from kairo_ros.inference.model_source import LocalModel, VersionRef

MODEL_ID = "mdl_server"
LOAD = session_loader(["CPUExecutionProvider"], 1)


def version_file(tmp_path: pathlib.Path, version: str, task: str = "manipulation", seed: int = 0) -> LocalModel:
    path = linear_model(features(task), tmp_path / f"{version}.onnx", model_id=MODEL_ID, version=version, seed=seed)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return LocalModel(VersionRef(MODEL_ID, version, sha256), path, from_cache=False)


class Recorder:
    """A started server with its events and the models it wired."""

    def __init__(self, load: model_server.Loader = LOAD) -> None:
        self.events: list[ServerEvent] = []
        self.wired: list[str] = []
        self.unwired = 0
        self.server = ModelServer(load, wire=lambda m: self.wired.append(m.identity.version),
                                  unwire=self._unwire)
        self.server.subscribe(self.events.append)
        self.server.start()

    def _unwire(self) -> None:
        self.unwired += 1

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    @property
    def serving(self) -> str:
        current = self.server.current
        return current.identity.version if current else ""


def arm_feeds() -> dict[str, np.ndarray]:
    return {"joint_positions": np.zeros((1, 3), np.float32), "target": np.zeros((1, 2), np.float32)}


def test_swap_keeps_the_wiring_and_the_replaced_model(tmp_path: pathlib.Path) -> None:
    run = Recorder()
    assert run.server.adopt(version_file(tmp_path, "v1", seed=1))
    first = run.server.current
    assert run.server.adopt(version_file(tmp_path, "v2", seed=2))
    assert run.serving == "v2" and run.server.previous is first
    assert run.wired == ["v1"], "the endpoints are made once, for the first model"
    assert run.kinds() == [model_server.SERVING, model_server.SERVING]
    assert run.events[1].replaced is not None and run.events[1].replaced.version == "v1"
    # The swapped-in session answers; nothing but the reference changed.
    assert run.server.current is not None and run.server.current.run(arm_feeds())[0].shape == (1, 3)
    run.server.stop()
    assert run.server.current is None and run.unwired == 1


def test_a_model_failing_on_a_message_is_rolled_back_and_never_loaded_again(tmp_path: pathlib.Path) -> None:
    run = Recorder()
    run.server.adopt(version_file(tmp_path, "v1", seed=1))
    v2 = version_file(tmp_path, "v2", seed=2)
    run.server.adopt(v2)
    failing = run.server.current
    assert failing is not None
    with pytest.raises(Exception) as raised:  # a real onnxruntime failure: a feed of the wrong shape
        failing.session.run(None, {"joint_positions": np.zeros((1, 5), np.float32),
                                   "target": np.zeros((1, 2), np.float32)})
    run.server.inference_failed(failing, raised.value)
    assert run.serving == "v1"
    assert run.events[-1].kind == model_server.ROLLED_BACK and "rolled back to v1" in run.events[-1].message
    assert v2.ref in run.server.rejected
    # Nothing left to roll back to: the failure is reported and v1 keeps serving.
    restored = run.server.current
    assert restored is not None
    run.server.inference_failed(restored, raised.value)
    assert run.serving == "v1" and run.events[-1].kind == model_server.INFERENCE_FAILED
    # A failure reported for a model that no longer serves changes nothing.
    assert run.server.rollback(failing) is None and run.serving == "v1"


def test_refused_versions_leave_the_current_model_serving(tmp_path: pathlib.Path) -> None:
    run = Recorder()
    run.server.adopt(version_file(tmp_path, "v1", seed=1))
    # Bytes that are not the version's: one flipped bit against the recorded sha256.
    altered = version_file(tmp_path, "v2", seed=2)
    data = bytearray(altered.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    altered.path.write_bytes(bytes(data))
    assert not run.server.adopt(altered)
    assert "sha256" in run.events[-1].message and "the current model keeps serving" in run.events[-1].message
    # A model wired to other topics cannot replace the one serving.
    other = version_file(tmp_path, "v3", task="navigation")
    assert not run.server.adopt(other)
    assert "wires different topics" in run.events[-1].message
    assert run.kinds()[1:] == [model_server.REJECTED, model_server.REJECTED]
    assert {altered.ref, other.ref} <= run.server.rejected
    assert run.serving == "v1" and run.wired == ["v1"]


def test_a_model_the_wiring_refuses_is_not_served(tmp_path: pathlib.Path) -> None:
    from kairo_ros.inference.errors import WiringError

    def refuse(model: ModelSession) -> None:
        raise WiringError("message type nope/msg/Nope: package 'nope' is not installed")

    server = ModelServer(LOAD, wire=refuse)
    events: list[ServerEvent] = []
    server.subscribe(events.append)
    server.start()
    assert not server.adopt(version_file(tmp_path, "v1"))
    assert server.current is None and events[-1].kind == model_server.REJECTED
    assert "nothing is serving" in events[-1].message and events[-1].code == "wiring"


def test_concurrent_promotions_serve_the_one_asked_for_last(tmp_path: pathlib.Path) -> None:
    v2, v3 = version_file(tmp_path, "v2", seed=2), version_file(tmp_path, "v3", seed=3)
    v2_loading, v3_served = threading.Event(), threading.Event()

    def load(local: LocalModel, expected: Features | None) -> ModelSession:
        if local.ref.version == "v2":  # v2 is asked for first but takes longer to load than v3
            v2_loading.set()
            assert v3_served.wait(10)
        return LOAD(local, expected)

    run = Recorder(load)
    run.server.adopt(version_file(tmp_path, "v1", seed=1))
    results: dict[str, bool] = {}
    slow = threading.Thread(target=lambda: results.setdefault("v2", run.server.adopt(v2)))
    slow.start()
    assert v2_loading.wait(10)
    results["v3"] = run.server.adopt(v3)
    v3_served.set()
    slow.join(10)
    assert results == {"v3": True, "v2": False}
    assert run.serving == "v3", "a model that finished loading after a later one was served is dropped"
    assert [e.model.version for e in run.events if e.kind == model_server.SERVING and e.model] == ["v1", "v3"]
    assert v2.ref not in run.server.rejected, "a superseded version is not a refused one"


def test_many_promotions_at_once_wire_once_and_end_on_the_last_served(tmp_path: pathlib.Path) -> None:
    versions = [version_file(tmp_path, f"v{i}", seed=i) for i in range(1, 7)]
    run = Recorder()
    threads = [threading.Thread(target=run.server.adopt, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    served = [e.model.version for e in run.events if e.kind == model_server.SERVING and e.model]
    assert len(run.wired) == 1 and served, "one wiring, whichever model came first"
    assert run.serving == served[-1]
    assert model_server.REJECTED not in run.kinds()


def test_a_load_ending_after_stop_is_dropped(tmp_path: pathlib.Path) -> None:
    loading, stopped = threading.Event(), threading.Event()

    def load(local: LocalModel, expected: Features | None) -> ModelSession:
        loading.set()
        assert stopped.wait(10)
        return LOAD(local, expected)

    run = Recorder(load)
    worker = threading.Thread(target=run.server.adopt, args=(version_file(tmp_path, "v1"),))
    worker.start()
    assert loading.wait(10)
    run.server.stop()
    stopped.set()
    worker.join(10)
    assert run.server.current is None and run.wired == [] and run.events == []


def test_robot_runtime_modules_import_neither_the_harness_nor_torch() -> None:
    probe = ("import sys, kairo_ros.inference.node, kairo_ros.manager.node; "
             "print(sorted(m for m in sys.modules if m.startswith('kairo_ros.testing') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
