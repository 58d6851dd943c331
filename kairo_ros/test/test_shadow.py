"""Shadow mode and the heartbeat thread without ROS: real onnxruntime sessions of small ONNX files,
a real API client against a port where nothing listens."""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
from onnx_models import features, linear_model, sqrt_model

from kairo_ros.api import Assignment, KairoApiClient
from kairo_ros.inference import model_server
from kairo_ros.inference.heartbeat import Heartbeat
from kairo_ros.inference.model_server import ModelServer, ServerEvent, session_loader
from kairo_ros.inference.model_session import ModelSession
from kairo_ros.inference.model_source import ModelSource, ShadowRef, VersionRef
from kairo_ros.inference.params import InferenceParams
from kairo_ros.inference.shadow import ShadowRunner
from kairo_ros.testing.graph import wait_until
from kairo_ros.testing.processes import free_port

MODEL_ID = "mdl_shadow"
PROVIDERS = ["CPUExecutionProvider"]
LOAD = session_loader(PROVIDERS, 1)


def session(path: pathlib.Path) -> ModelSession:
    return ModelSession.load(path, PROVIDERS, 1)


def arm_inputs(count: int, seed: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"joint_positions": rng.uniform(-1, 1, (1, 3)).astype(np.float32),
             "target": rng.uniform(-1, 1, (1, 2)).astype(np.float32)} for _ in range(count)]


def offer_all(runner: ShadowRunner, active: ModelSession, inputs: list[dict[str, np.ndarray]]) -> None:
    """Offer each input once the candidate ran the one before (so none is skipped)."""
    for index, feeds in enumerate(inputs):
        runner.offer(feeds, active.run(feeds))  # the runner copies: the session reuses its buffers
        wait_until(lambda i=index: runner.stats().samples > i, 20, f"input {index} run", period_s=0.001)


def test_divergence_matches_numpy_on_the_same_inputs(tmp_path: pathlib.Path) -> None:
    doc = features("manipulation")
    active = session(linear_model(doc, tmp_path / "v1.onnx", seed=1))
    candidate = session(linear_model(doc, tmp_path / "v2.onnx", version="v2", seed=2))
    tolerance = 0.05
    runner = ShadowRunner(candidate, "dep_test", tolerance)
    inputs = arm_inputs(200)
    try:
        offer_all(runner, active, inputs)
        wait_until(lambda: runner.stats().samples + runner.stats().dropped == len(inputs), 20, "every input run")
        stats = runner.stats()
    finally:
        runner.stop()
    assert stats.dropped == 0 and stats.samples == len(inputs) and stats.errors == 0
    reference_active = session(tmp_path / "v1.onnx")
    reference_candidate = session(tmp_path / "v2.onnx")
    diffs = np.concatenate([np.abs(reference_candidate.run(f)[0].astype(np.float64)
                                   - reference_active.run(f)[0].astype(np.float64)).ravel() for f in inputs])
    measured = stats.outputs["joint_commands"]
    assert measured.mean_abs_diff > 0
    np.testing.assert_allclose(measured.mean_abs_diff, diffs.mean(), rtol=1e-9)
    np.testing.assert_allclose(measured.max_abs_diff, diffs.max(), rtol=1e-9)
    assert measured.within_tolerance == np.count_nonzero(diffs <= tolerance) / diffs.size
    assert stats.divergence == measured.mean_abs_diff and measured.tolerance == tolerance
    assert stats.latency_p50_ms > 0 and stats.latency_p99_ms >= stats.latency_p50_ms
    json = stats.to_json()
    assert json["deployment_id"] == "dep_test" and json["outputs"]["joint_commands"]["within_tolerance"] \
        == measured.within_tolerance


def test_non_finite_candidate_outputs_are_errors_and_not_compared(tmp_path: pathlib.Path) -> None:
    doc = features("manipulation")
    active = session(linear_model(doc, tmp_path / "v1.onnx", seed=1))
    candidate = session(sqrt_model(doc, tmp_path / "v2.onnx", model_id="mdl_test", version="v2"))
    runner = ShadowRunner(candidate, "", 0.05)
    positive = {"joint_positions": np.full((1, 3), 0.25, np.float32), "target": np.zeros((1, 2), np.float32)}
    negative = {"joint_positions": np.full((1, 3), -0.25, np.float32), "target": np.zeros((1, 2), np.float32)}
    try:
        offer_all(runner, active, [positive, negative, negative, positive])
        wait_until(lambda: runner.stats().samples == 4, 20, "four inputs run")
        stats = runner.stats()
    finally:
        runner.stop()
    assert stats.errors == 2, "the two NaN answers count as errors"
    expected = np.abs(0.5 - active.run(positive)[0].astype(np.float64)).mean()
    np.testing.assert_allclose(stats.outputs["joint_commands"].mean_abs_diff, expected, rtol=1e-6)


def test_a_full_queue_drops_shadow_samples_and_never_blocks_the_caller(tmp_path: pathlib.Path) -> None:
    doc = features("manipulation")
    active = session(linear_model(doc, tmp_path / "v1.onnx", seed=1))
    candidate = session(linear_model(doc, tmp_path / "v2.onnx", version="v2", seed=2))
    runner = ShadowRunner(candidate, "", 0.05, queue_size=1)
    inputs = arm_inputs(500)
    outputs = [active.run(f)[0].copy() for f in inputs]
    try:
        for feeds, output in zip(inputs, outputs, strict=True):
            runner.offer(feeds, [output])
        wait_until(lambda: runner.stats().samples + runner.stats().dropped == len(inputs), 20, "every offer counted")
        stats = runner.stats()
    finally:
        runner.stop()
    assert stats.dropped > 0 and stats.samples > 0, "a queue of one cannot keep up with 500 offers at once"


class AssignedSource(ModelSource):
    """A source whose assignment is set by the test; the files come from its cache, sha256-verified."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        super().__init__(InferenceParams(model_id=MODEL_ID, robot_id="rob_1", cache_dir=tmp_path / "cache"),
                         None, lambda _message: None)
        self.serve: VersionRef | None = None

    def add(self, version: str, path: pathlib.Path) -> VersionRef:
        ref = VersionRef(MODEL_ID, version, hashlib.sha256(path.read_bytes()).hexdigest())
        self.cache.file_for(ref).parent.mkdir(parents=True, exist_ok=True)
        self.cache.file_for(ref).write_bytes(path.read_bytes())
        return ref

    def resolve(self) -> VersionRef:
        assert self.serve is not None
        return self.serve


def test_the_server_loads_a_shadow_refuses_another_signature_and_lets_it_go(tmp_path: pathlib.Path) -> None:
    arm, nav = features("manipulation"), features("navigation")
    source = AssignedSource(tmp_path)
    v1 = source.add("v1", linear_model(arm, tmp_path / "a.onnx", model_id=MODEL_ID, version="v1", seed=1))
    v2 = source.add("v2", linear_model(arm, tmp_path / "b.onnx", model_id=MODEL_ID, version="v2", seed=2))
    v3 = source.add("v3", linear_model(nav, tmp_path / "c.onnx", model_id=MODEL_ID, version="v3", seed=3))
    events: list[ServerEvent] = []
    server = ModelServer(LOAD, source, shadow_tolerance=0.01)
    server.subscribe(events.append)
    server.start()
    source.serve, source.shadow = v1, ShadowRef(v2, "dep_a")
    assert server.check_source()
    assert server.current is not None and server.current.identity.version == "v1"
    runner = server.shadow
    assert runner is not None and runner.identity.version == "v2" and runner.deployment_id == "dep_a"
    assert runner.tolerance == 0.05, "the features' own tolerance wins over the parameter"
    assert [e.kind for e in events] == [model_server.SERVING, model_server.SHADOWING]
    # Another I/O signature: refused, reported, and v2 is let go (the assignment no longer names it).
    source.shadow = ShadowRef(v3, "dep_b")
    server.check_source()
    assert server.shadow is None
    assert [r.ref for r in server.refusals] == [v3]
    assert "wires different topics" in server.refusals[0].message
    assert server.refusals[0].to_json()["version"] == "v3"
    assert model_server.SHADOW_ENDED in [e.kind for e in events]
    # No candidate: nothing shadows; a refused one is not loaded again.
    source.shadow = ShadowRef(v3, "dep_b")
    server.check_source()
    assert server.shadow is None and len(server.refusals) == 1
    source.shadow = ShadowRef(v2, "dep_c")
    server.check_source()
    assert server.shadow is not None and server.shadow.deployment_id == "dep_c"
    server.stop()
    assert server.shadow is None


def test_assignment_changes_are_noticed(tmp_path: pathlib.Path) -> None:
    source = AssignedSource(tmp_path)
    assert source.assigned(Assignment(MODEL_ID, "rob_1", "v1"))
    assert not source.assigned(None)
    assert source.wants_event(MODEL_ID, "", "", ["rob_1", "rob_2"])
    assert not source.wants_event(MODEL_ID, "", "", ["rob_2"])
    assert source.wants_event(MODEL_ID, "", "", [])


def test_heartbeats_that_fail_are_logged_once_and_never_stop_the_thread() -> None:
    client = KairoApiClient(f"http://127.0.0.1:{free_port()}", "kairo_sk_test_0123456789", timeout_s=0.5)
    warnings: list[str] = []
    beat = Heartbeat(0.05, lambda: {"period_s": 0.05}, lambda r: client.heartbeat("rob_1", r), lambda _a: None,
                     warn=warnings.append, info=warnings.append)
    beat.start()
    try:
        wait_until(lambda: beat.failed >= 5, 20, "five failed heartbeats")
        beat.poke()
    finally:
        beat.stop()
        client.close()
    assert beat.sent == 0 and len(warnings) == 1, warnings
    assert "heartbeat not delivered" in warnings[0] and "kairo_sk" not in warnings[0]
    beat.stop()  # idempotent
