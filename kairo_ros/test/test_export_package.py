"""Export as a ROS 2 package, end to end: real backend, real manager, real colcon build, real DDS.

A demo model trained by the backend is exported as ros2-pkg through the
manager's export action, built with colcon in a fresh workspace on top of
this workspace's install (kairo_ros, kairo_interfaces), and served by
kairo_inference from the package's own params file with the backend
stopped; its predictions must equal onnxruntime's on the bundled model, and
the envelope the bundled model carries must guard it (offline).
Hostile archives come from a stand-in server, since the real backend never
makes one: they are refused and nothing lands outside the output dir.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from inference_helpers import (
    NODE,
    Collector,
    arm_publishers,
    diagnostic_values,
    joint_state,
    predictions,
    publish_until,
    reference_session,
    target_point,
)
from test_launch_files import of_kind, run_launch
from test_manager import commander, start_manager
from test_package_archive import GOOD, archive, entry

from conftest import Backend, start_backend, train_model
from kairo_features.schema import features_from_metadata
from kairo_interfaces.action import ExportModel
from kairo_ros.testing.graph import SpinningNode
from kairo_ros.testing.processes import ProcessGroup

SAMPLES = 20


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def colcon_build(workspace: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Build every package under workspace/src on top of this workspace's install (the current env)."""
    return subprocess.run(
        ["colcon", "--log-base", str(workspace / "log"), "build", "--base-paths", str(workspace / "src"),
         "--build-base", str(workspace / "build"), "--install-base", str(workspace / "install"),
         "--event-handlers", "console_cohesion-", "summary+"],
        cwd=workspace, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def sourced_env(setup: pathlib.Path) -> dict[str, str]:
    """The environment after `source setup.bash`, as a robot's shell would have it."""
    out = subprocess.run(["bash", "-c", f'source "{setup}" >/dev/null && env -0'], capture_output=True,
                         timeout=60, env=dict(os.environ), check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def test_an_exported_package_builds_and_serves_offline(  # type: ignore[no-untyped-def]
        processes: ProcessGroup, ros: SpinningNode, tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "backend"
    backend_process = start_backend(processes, data_dir)
    backend = Backend(backend_process.url, "", data_dir, backend_process)  # type: ignore[attr-defined]
    backend.key = backend.cli("keys", "create", "--workspace", "test")
    model = train_model(backend, "manipulation", epochs=3)
    manager = start_manager(processes, ros, backend.url, backend.key, tmp_path)
    kairo = commander(ros)

    workspace = tmp_path / "ws"
    src = workspace / "src"
    feedback: list[ExportModel.Feedback] = []
    result = kairo.export(ExportModel.Goal(model_id=model.model_id, format="ros2-pkg", version=model.version,
                                           output_dir=str(src)), feedback.append, timeout_s=120)
    assert result.path, result.message
    package = pathlib.Path(result.path)
    name = package.name
    assert package.parent == src and sorted(p.name for p in src.iterdir()) == [name], "only the package"
    assert name == f"kairo_model_{model.model_id.removeprefix('mdl_')}_{model.version}"
    assert result.format == "ros2-pkg"
    stages = [f.stage for f in feedback]
    assert stages[0] == "requesting" and stages[-1] == "done" and "writing" in stages
    assert feedback[-1].bytes_received == feedback[-1].bytes_total > 0

    with backend.client() as raw:  # the backend's own answers, apart from the manager
        pkg_link = raw.post(f"/v1/models/{model.model_id}/export",
                            json={"format": "ros2-pkg", "version": model.version}).json()
        onnx_link = raw.post(f"/v1/models/{model.model_id}/export",
                             json={"format": "onnx", "version": model.version}).json()
        archive_bytes = raw.get(pkg_link["download_url"]).content
        onnx_bytes = raw.get(onnx_link["download_url"]).content
    assert result.sha256 == pkg_link["sha256"] == sha256_of(archive_bytes)
    assert feedback[-1].bytes_received == len(archive_bytes)
    assert (package / "models" / "model.onnx").read_bytes() == onnx_bytes
    ratio = len(archive_bytes) / len(onnx_bytes)
    print(f"\nros2-pkg archive {len(archive_bytes)} bytes, ONNX file {len(onnx_bytes)} bytes "
          f"(archive / onnx = {ratio:.3f}, overhead {len(archive_bytes) - len(onnx_bytes):+d} bytes)")
    assert len(archive_bytes) < len(onnx_bytes) + 16_384, "the package adds only a few small files"

    built = colcon_build(workspace)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    share = workspace / "install" / name / "share" / name
    installed_model = share / "models" / "model.onnx"
    assert installed_model.read_bytes() == onnx_bytes
    digest, file_name = (share / "models" / "model.onnx.sha256").read_text().split()
    assert (digest, file_name) == (sha256_of(onnx_bytes), "model.onnx")
    params_file = share / "config" / "params.yaml"
    assert str(tmp_path) not in params_file.read_text(), "no path of the exporting machine"
    check_launch_file(share / "launch" / "model.launch.py", name, workspace / "install")

    backend_process.stop()
    assert not backend_process.alive and manager.alive
    env = sourced_env(workspace / "install" / "setup.bash")
    env["ROS_LOG_DIR"] = str(tmp_path / "roslog")
    node = processes.start("kairo_inference", ["kairo_inference", "--ros-args", "--params-file", str(params_file)],
                           env=env)
    processes.wait_until(lambda: NODE in ros.node_names(), 30, f"node {NODE}", watch=node)

    answers = predictions(ros)
    joints, targets = arm_publishers(ros)
    rng = np.random.default_rng(7)
    positions = rng.uniform(-1.0, 1.0, (SAMPLES, 3)).astype(np.float32)
    goal = np.array([0.35, -0.25], np.float32)  # one target: every prediction reads this one
    reference = reference_session(installed_model)
    for index in range(SAMPLES):
        stamp = 1000 + index
        # sensor-data QoS (the packaged params) keeps only the newest message: publish until answered.
        publish_until(lambda: (targets.publish(target_point(goal)),  # noqa: B023
                               joints.publish(joint_state(stamp, positions[index]))),  # noqa: B023
                      lambda: any(m.header.stamp.sec == stamp for m in answers.snapshot()),  # noqa: B023
                      20, f"prediction {index}")
        answer = next(m for m in answers.snapshot() if m.header.stamp.sec == stamp)
        expected = reference.run(None, {"joint_positions": positions[index][None], "target": goal[None]})[0][0]
        np.testing.assert_allclose(np.array(answer.data), expected, rtol=1e-5, atol=1e-6)
        assert (answer.model_id, answer.model_version) == (model.model_id, model.version)
    node.wait_for_output(f"serving file {installed_model}", 10)  # package:// resolved in the new install
    check_packaged_envelope(ros, reference, answers, joints, targets, goal)
    assert node.alive and manager.alive


def check_packaged_envelope(ros: SpinningNode, reference: Any, answers: Collector, joints: Any, targets: Any,
                            goal: np.ndarray) -> None:
    """The envelope inside the package's ONNX guards the node offline: the training range, widened by the
    default margin (0.1), drops an input outside it and bounds every command."""
    envelope = features_from_metadata(reference.get_modelmeta().custom_metadata_map)
    joints_range, commands_range = envelope.entry("joint_positions").range, envelope.outputs[0].range
    assert joints_range is not None and commands_range is not None, "the package's model carries its envelope"
    low, high = np.array(joints_range.low), np.array(joints_range.high)
    outside = (high + 0.5 * (high - low)).astype(np.float32)  # past the margin on every joint
    reports = Collector(ros, DiagnosticArray, "/diagnostics")
    stamp = 5000
    publish_until(lambda: (targets.publish(target_point(goal)), joints.publish(joint_state(stamp, outside))),
                  lambda: any(int(diagnostic_values(a).get("guard_out_of_envelope_input", "0")) >= 1
                              for a in reports.snapshot()),
                  20, "the guard's out_of_envelope_input count in /diagnostics")
    assert not [m for m in answers.snapshot() if m.header.stamp.sec == stamp], "an input outside the envelope " \
        "was answered"
    c_low, c_high = np.array(commands_range.low), np.array(commands_range.high)
    margin = 0.1 * (c_high - c_low)
    for answer in answers.snapshot():
        data = np.array(answer.data)
        assert np.isfinite(data).all() and (data >= c_low - margin - 1e-5).all() \
            and (data <= c_high + margin + 1e-5).all(), data


def check_launch_file(path: pathlib.Path, package: str, install: pathlib.Path) -> None:
    """The package's launch file, run against stand-ins of launch/launch_ros (absent from pip installs)."""
    run = run_launch(path)
    made = run.made
    declared = {a.args[0]: a for a in of_kind(made, "DeclareLaunchArgument")}
    for arg_name, arg in declared.items():
        assert "default_value" in arg.kwargs and len(arg.kwargs.get("description", "")) > 10, arg_name
    assert {"log_level", "namespace", "params_file", "use_sim_time"} <= set(declared)
    used = {c.args[0] for c in of_kind(made, "LaunchConfiguration")} | run.configurations.read
    assert used == set(declared)
    # Nothing but the params file sets a parameter unless an argument is given.
    [node] = of_kind(made, "Node")
    assert node.kwargs["parameters"][1:] == [{}], node.kwargs["parameters"]
    given = run_launch(path, {"input_qos": "reliable", "use_sim_time": "true"})
    [node] = of_kind(given.made, "Node")
    assert node.kwargs["parameters"][1:] == [{"input_qos": "reliable", "use_sim_time": True}]
    assert (node.kwargs["package"], node.kwargs["executable"]) == ("kairo_ros", "kairo_inference")
    [join] = of_kind(made, "PathJoinSubstitution")
    finder, *parts = join.args[0]
    assert finder.kind == "FindPackageShare" and finder.args[0] == package
    params = install / package / "share" / package / pathlib.Path(*parts)
    assert yaml.safe_load(params.read_text())["/**/kairo_inference"]["ros__parameters"]["model_path"] == \
        f"package://{package}/models/model.onnx"


# --- hostile archives ------------------------------------------------------------------------------
class StandInApi(http.server.ThreadingHTTPServer):
    """Answers POST /v1/models/{id}/export and serves /downloads/{id}.tar.gz: (bytes, stated sha256) per id."""

    def __init__(self, served: dict[str, tuple[bytes, str]]) -> None:
        self.served = served
        super().__init__(("127.0.0.1", 0), _StandInHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    server: StandInApi

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        model_id = self.path.split("/")[3]
        data, stated = self.server.served[model_id]
        self._send(200, json.dumps({
            "download_url": f"{self.server.url}/downloads/{model_id}_v1.tar.gz?expires=1&sig=x",
            "expires_at": "2099-01-01T00:00:00Z", "format": "ros2-pkg", "size_mb": len(data) / 1e6,
            "sha256": stated, "version": "v1"}).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802
        model_id = self.path.split("/")[2].split("?")[0].removesuffix("_v1.tar.gz")
        self._send(200, self.server.served[model_id][0], "application/octet-stream")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def stand_in(tmp_path: pathlib.Path) -> Iterator[StandInApi]:
    built = tmp_path / "built"
    built.mkdir()

    def honest(path: pathlib.Path) -> tuple[bytes, str]:
        data = path.read_bytes()
        return data, sha256_of(data)

    whole = archive(built / "whole.tar.gz", {**GOOD, "kairo_model_abc123_v2/data.bin": os.urandom(100_000)})
    served = {
        "mdl_traversal": honest(archive(built / "t.tar.gz", GOOD, [entry("kairo_model_abc123_v2/../../../evil")])),
        "mdl_dotdot": honest(archive(built / "d.tar.gz", {"../evil": b"x", **GOOD})),
        "mdl_absolute": honest(archive(built / "a.tar.gz", GOOD, [entry(str(tmp_path / "evil"))])),
        "mdl_symlink": honest(archive(built / "s.tar.gz", GOOD, [
            entry("kairo_model_abc123_v2/escape", tarfile.SYMTYPE, linkname=str(tmp_path))])),
        "mdl_tampered": (whole.read_bytes(), sha256_of(b"what the backend stated")),
        "mdl_truncated": honest_truncated(whole),
    }
    server = StandInApi(served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def honest_truncated(path: pathlib.Path) -> tuple[bytes, str]:
    """Half an archive whose stated sha256 is that of the half (a backend that cut it short)."""
    data = path.read_bytes()[: path.stat().st_size // 2]
    return data, sha256_of(data)


@pytest.mark.parametrize(("model_id", "says"), [
    ("mdl_traversal", "'..'"), ("mdl_dotdot", "'..'"), ("mdl_absolute", "absolute"), ("mdl_symlink", "symlink"),
    ("mdl_tampered", "sha256"), ("mdl_truncated", "damaged or truncated"),
])
def test_hostile_archives_are_refused_through_the_action(  # type: ignore[no-untyped-def]
        stand_in: StandInApi, processes: ProcessGroup, ros: SpinningNode, tmp_path: pathlib.Path,
        model_id: str, says: str) -> None:
    start_manager(processes, ros, stand_in.url, "kai_live_" + "0" * 32, tmp_path)
    kairo = commander(ros)
    fence = tmp_path / "fence"
    out = fence / "out"
    before = sorted(str(p) for p in tmp_path.rglob("*") if "roslog" not in p.parts and "logs" not in p.parts)
    outcome = kairo.start_export(ExportModel.Goal(model_id=model_id, format="ros2-pkg", output_dir=str(out))).result(60)
    assert outcome.aborted and not outcome.result.path, outcome.result.message
    assert says in outcome.result.message, outcome.result.message
    assert not any(out.iterdir()), "nothing left in the output dir"
    after = sorted(str(p) for p in tmp_path.rglob("*") if "roslog" not in p.parts and "logs" not in p.parts)
    assert [p for p in after if p not in before] in ([], [str(fence), str(out)]), "nothing written elsewhere"
    assert not list(tmp_path.rglob("evil")) and not (tmp_path.parent / "evil").exists()
