"""kairo_demo: the whole loop on this machine, in one command (`make demo`).

An embedded backend in a fresh data directory, a key and the manipulation
demo dataset; kairo_manager, kairo_inference and a simulated arm in their
own processes on a private ROS domain. A model is trained through
/kairo/train and promoted through /kairo/promote; the arm is driven by its
predictions; a second version is trained and promoted while the arm keeps
publishing, and the inference node switches to it without a restart. Every
process started here is stopped on the way out, Ctrl-C included.

With --from-recording the dataset is not the built-in one: the arm is first
driven by its scripted expert while /kairo/record records its topics and
uploads the recording; the models are trained on what was recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

import httpx
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rclpy.action import ActionClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from kairo_interfaces.action import RecordDataset, TrainModel
from kairo_interfaces.msg import Prediction
from kairo_ros.demo.curves import save_training_curves
from kairo_ros.demo.sim_arm import hand_position
from kairo_ros.spin import StopRequest, ignore_stop_signals
from kairo_ros.testing.commander import KairoCommander
from kairo_ros.testing.graph import SpinningNode, wait_future, wait_until
from kairo_ros.testing.processes import ProcessGroup, claim_domain_id, free_port, isolated_ros_env

ROBOT_ID = "rob_demo0001"
NAMESPACE = "/kairo"
LINKS = (0.4, 0.3, 0.2)


@dataclass(frozen=True)
class DemoConfig:
    samples: int
    epochs: tuple[int, int]
    serve_s: float
    output_dir: pathlib.Path
    keep_data: bool
    record_s: float = 0.0  # > 0: record the expert-driven arm this long and train on that instead


@dataclass
class ArmWatch:
    """What the demo sees on the robot's topics while the model drives the arm."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    joint_states: int = 0
    commands: int = 0
    target: tuple[float, float] = (math.nan, math.nan)
    errors_m: list[float] = field(default_factory=list)
    versions_seen: list[tuple[float, str]] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)

    def on_joints(self, msg: JointState) -> None:
        with self.lock:
            self.joint_states += 1
            if len(msg.position) == 3 and not math.isnan(self.target[0]):
                x, y = hand_position(list(msg.position), LINKS)
                self.errors_m.append(math.dist((x, y), self.target))

    def on_target(self, msg: PointStamped) -> None:
        with self.lock:
            self.target = (msg.point.x, msg.point.y)

    def on_command(self, _msg: Float64MultiArray) -> None:
        with self.lock:
            self.commands += 1

    def on_prediction(self, msg: Prediction) -> None:
        with self.lock:
            if not self.versions_seen or self.versions_seen[-1][1] != msg.model_version:
                self.versions_seen.append((time.monotonic(), msg.model_version))

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id.endswith("kairo_inference"):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def dropped_not_by_guard(self) -> int:
        """Inputs dropped for any reason but the safety guard's (a hot swap must add none of these)."""
        with self.lock:
            return int(self.diagnostics.get("dropped", "0")) - int(self.diagnostics.get("dropped_guard", "0"))

    def serving(self) -> str:
        with self.lock:
            return self.versions_seen[-1][1] if self.versions_seen else ""

    def tracking_error_m(self, last: int = 200) -> float:
        with self.lock:
            window = self.errors_m[-last:]
        return sum(window) / len(window) if window else math.nan


class Demo:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.data_dir = pathlib.Path(tempfile.mkdtemp(prefix="kairo-demo-"))
        self.domain_id, self._domain_claim = claim_domain_id()
        env = isolated_ros_env(self.domain_id)
        env["ROS_LOG_DIR"] = str(self.data_dir / "ros-logs")
        self.processes = ProcessGroup(log_dir=self.data_dir / "logs", env=env)
        self.api_url = ""
        self.watch = ArmWatch()
        self.runs: list[tuple[str, TrainModel.Result]] = []

    # --- steps ----------------------------------------------------------------
    def start_backend(self) -> None:
        for _attempt in range(3):  # a port can be taken between picking and binding
            port = free_port()
            child = self.processes.start("backend", [sys.executable, "-m", "kairo_backend", "serve", "--host",
                                                     "127.0.0.1", "--port", str(port), "--data-dir",
                                                     str(self.data_dir / "backend")])
            url = f"http://127.0.0.1:{port}"
            try:
                self.processes.wait_until(functools.partial(_healthy, url), 60, f"backend at {url}", watch=child)
            except RuntimeError:
                continue
            self.api_url = url
            return
        raise RuntimeError("the backend did not start on any of 3 free ports; see " + str(self.processes.log_dir))

    def backend_cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "kairo_backend", *args, "--data-dir",
                              str(self.data_dir / "backend")], check=True, capture_output=True, text=True,
                             timeout=180, env=self.processes.env).stdout
        return out.strip().splitlines()[-1]

    def start_nodes(self) -> None:
        ros_args = ["--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", f"api_url:={self.api_url}",
                    "-p", f"robot_id:={ROBOT_ID}"]
        self.processes.start("kairo_manager", ["kairo_manager", *ros_args, "-p", "poll_period_s:=0.25"])
        # A briefly trained v1 can drive the simulated arm outside the states it was trained on; the guard's
        # default there (drop) would then hold the arm still for good, so the demo clamps such inputs to the
        # envelope and lets the model bring the arm back. Non-finite values are still never fed to it.
        self.processes.start("kairo_inference", ["kairo_inference", *ros_args, "-p", "task:=manipulation",
                                                 "-p", f"cache_dir:={self.data_dir / 'model-cache'}",
                                                 "-p", "poll_period_s:=5.0", "-p", "out_of_envelope:=clamp"])
        self.processes.start("kairo_sim_arm", ["kairo_sim_arm"])

    def record(self, ros: SpinningNode) -> str:
        """Drive the arm by its scripted expert, record it with /kairo/record and upload it; the dataset ID."""
        expert = self.processes.start("kairo_arm_expert", [sys.executable, "-m", "kairo_ros.demo.expert"])
        client = ActionClient(ros.node, RecordDataset, f"{NAMESPACE}/record")
        try:
            ros.wait_for_action_server(client, 60, "record")
            wait_until(lambda: bool(ros.node.get_publishers_info_by_topic("/arm_controller/commands")), 60,
                       "the expert's commands")
            goal = RecordDataset.Goal(task="manipulation", duration_s=self.config.record_s, name="demo-arm",
                                      upload=True, output_dir=str(self.data_dir / "recordings"))
            # sent and followed from the spinning thread: see SpinningNode.on_executor
            sent = ros.on_executor(lambda: client.send_goal_async(goal), 30, "send the record goal")
            handle = wait_future(sent, 30, "the record goal's acceptance")
            if not handle.accepted:
                raise RuntimeError("kairo_manager rejected the record goal")
            asked = ros.on_executor(handle.get_result_async, 30, "ask for the recording's result")
            result = wait_future(asked, self.config.record_s + 300, "recording").result
        finally:
            client.destroy()
            expert.stop()  # the learned model drives the arm from here on
        if not result.success:
            raise RuntimeError(f"recording failed: {result.message}")
        counts = ", ".join(f"{t} {n}" for t, n in zip(result.topics, result.message_counts, strict=True))
        print(f"        {result.samples} samples from {counts}")
        print(f"        bag {result.bag_path} -> dataset {result.dataset_id}")
        return str(result.dataset_id)

    def subscribe(self, ros: SpinningNode) -> None:
        node, watch = ros.node, self.watch
        node.create_subscription(JointState, "/joint_states", watch.on_joints, 50)
        node.create_subscription(PointStamped, "/target_point", watch.on_target, 50)
        node.create_subscription(Float64MultiArray, "/arm_controller/commands", watch.on_command, 50)
        node.create_subscription(Prediction, f"{NAMESPACE}/kairo_inference/prediction", watch.on_prediction,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(DiagnosticArray, "/diagnostics", watch.on_diagnostics, 10)

    def train(self, commander: KairoCommander, dataset_id: str, label: str, epochs: int) -> TrainModel.Result:
        goal = TrainModel.Goal(dataset_id=dataset_id, task="manipulation", name="demo-arm")
        goal.config.epochs = epochs
        line = ProgressLine(label)
        result = commander.train(goal, on_feedback=line.update, timeout_s=600)
        line.finish(result)
        if result.status != "complete":
            raise RuntimeError(f"training {label} ended {result.status}: {result.message}")
        self.runs.append((label, result))
        return result

    def promote_and_wait(self, commander: KairoCommander, result: TrainModel.Result) -> float:
        """Promote; return seconds from the promote call to the first prediction of that version."""
        started = time.monotonic()
        answer = commander.promote(result.model_id, result.model_version)
        if not answer.success:
            raise RuntimeError(f"promote {result.model_version} failed: {answer.message}")
        wait_until(lambda: self.watch.serving() == result.model_version, 60,
                   f"inference serving {result.model_version}")
        return time.monotonic() - started

    def serve(self, seconds: float) -> tuple[int, int]:
        before = (self.watch.joint_states, self.watch.commands)
        time.sleep(seconds)
        return self.watch.joint_states - before[0], self.watch.commands - before[1]

    def run(self) -> None:
        out = self.config.output_dir
        step("backend", "starting the embedded backend in a fresh data directory")
        self.start_backend()
        key = self.backend_cli("keys", "create", "--workspace", "demo")
        self.processes.env["KAIRO_API_KEY"] = key
        dataset_id = ""
        if not self.config.record_s:
            dataset_id = self.backend_cli("datasets", "create-demo", "manipulation", "--workspace", "demo",
                                          "--samples", str(self.config.samples))
        print(f"        {self.api_url}  dataset {dataset_id or '(recorded below)'}  ROS_DOMAIN_ID={self.domain_id}")
        step("nodes", "kairo_manager, kairo_inference and the simulated arm")
        self.start_nodes()
        with SpinningNode("kairo_demo", domain_id=self.domain_id) as ros:
            self.subscribe(ros)
            commander = KairoCommander(ros, namespace=NAMESPACE)
            commander.wait_until_ready(timeout_s=60)
            if self.config.record_s:
                step("record", f"/kairo/record, {self.config.record_s:g} s of the arm driven by its scripted "
                               f"expert, uploaded as a dataset")
                dataset_id = self.record(ros)

            step("train v1", f"/kairo/train, {self.config.epochs[0]} epochs")
            v1 = self.train(commander, dataset_id, "v1", self.config.epochs[0])
            step("promote v1", "/kairo/promote; the inference node loads it")
            v1_load_s = self.promote_and_wait(commander, v1)
            joints, commands = self.serve(self.config.serve_s)
            err_v1 = self.watch.tracking_error_m()
            print(f"        serving {v1.model_version}: {commands} commands for {joints} joint states in "
                  f"{self.config.serve_s:.0f} s; hand-to-target error {err_v1 * 100:.1f} cm")

            step("train v2", f"while the arm keeps running, {self.config.epochs[1]} epochs")
            v2 = self.train(commander, dataset_id, "v2", self.config.epochs[1])
            dropped_before = self.watch.dropped_not_by_guard()
            step("promote v2", "hot swap under load")
            swap_s = self.promote_and_wait(commander, v2)
            joints2, commands2 = self.serve(self.config.serve_s)
            err_v2 = self.watch.tracking_error_m()
            diag = dict(self.watch.diagnostics)
            dropped_swap = self.watch.dropped_not_by_guard() - dropped_before
            print(f"        serving {v2.model_version}: {commands2} commands for {joints2} joint states; "
                  f"hand-to-target error {err_v2 * 100:.1f} cm")

            runs = [(label, commander.get_run(r.model_id, r.run_id).logs) for label, r in self.runs]
        png = save_training_curves(runs, out / "training_curves.png")
        summary = [
            ("versions", f"{v1.model_version} -> {v2.model_version} (model {v2.model_id})"),
            ("val_accuracy", f"{v1.metrics.val_accuracy:.3f} -> {v2.metrics.val_accuracy:.3f}"),
            ("promote -> serving", f"{v1_load_s:.2f} s (first load), {swap_s:.2f} s (hot swap)"),
            ("latency p50 / p99", f"{diag.get('latency_p50_ms', 'n/a')} / {diag.get('latency_p99_ms', 'n/a')} ms"),
            ("messages in / out", f"{diag.get('inputs', '?')} / {diag.get('predictions', '?')}"),
            ("dropped in hot swap", str(dropped_swap)),
            ("dropped in all", f"{diag.get('dropped', '?')} (before v1, while inputs were incomplete, "
                               f"and {diag.get('dropped_guard', '?')} by the safety guard)"),
            ("training curves", str(png)),
        ]
        step("summary", "")
        width = max(len(k) for k, _ in summary)
        for key_name, value in summary:
            print(f"        {key_name:<{width}}  {value}")

    # --- shutdown -------------------------------------------------------------
    def close(self, failed: bool) -> None:
        self.processes.stop_all()
        alive = [c.name for c in self.processes.children if c.alive]
        if alive:
            print(f"[demo] still alive after stop: {alive}", file=sys.stderr)
        if failed or self.config.keep_data:
            print(f"[demo] logs and data kept in {self.data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._domain_claim.close()


class ProgressLine:
    """One live line of training progress, rewritten in place on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stdout.isatty()
        self._last = ""

    def update(self, fb: TrainModel.Feedback) -> None:
        if fb.status == "queued":
            text = f"queued (position {fb.position_in_queue})"
        else:
            total = max(fb.epochs_total, 1)
            filled = int(20 * fb.epoch / total)
            text = (f"[{'#' * filled}{'.' * (20 - filled)}] epoch {fb.epoch}/{fb.epochs_total} "
                    f"loss {fb.loss:.4f} val {fb.val_loss:.4f} ~{fb.estimated_remaining_s:.0f} s left")
        if text == self._last:
            return
        self._last = text
        if self.tty:
            print(f"\r        {self.label} {text}\033[K", end="", flush=True)
        elif fb.status == "queued" or fb.epoch in (1, fb.epochs_total) or fb.epoch % 5 == 0:
            print(f"        {self.label} {text}", flush=True)

    def finish(self, result: TrainModel.Result) -> None:
        if self.tty:
            print()
        m = result.metrics
        print(f"        {self.label} {result.status} in {result.duration_s:.1f} s: val_loss {m.val_loss:.4f}, "
              f"val_accuracy {m.val_accuracy:.3f}, p99 latency {m.inference_latency_p99_ms:.3f} ms")


def step(name: str, text: str) -> None:
    print(f"[demo] {name}{': ' + text if text else ''}", flush=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo the way Ctrl-C does: through the cleanup."""
    def raise_interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_args(argv: list[str] | None = None) -> DemoConfig:
    parser = argparse.ArgumentParser(prog="kairo_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8000, help="samples in the demo dataset")
    parser.add_argument("--epochs", type=int, nargs=2, default=(10, 60), metavar=("V1", "V2"),
                        help="epochs of the first and second training run")
    parser.add_argument("--serve-seconds", type=float, default=5.0, help="seconds each version drives the arm")
    parser.add_argument("--output-dir", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("KAIRO_ROOT", ".")) / "demo-output",
                        help="where the training curves PNG goes")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    parser.add_argument("--from-recording", type=float, nargs="?", const=60.0, default=0.0, metavar="SECONDS",
                        help="train on SECONDS (default 60) of the arm driven by its scripted expert, recorded "
                             "with /kairo/record and uploaded, instead of the built-in dataset")
    args = parser.parse_args(argv)
    if args.from_recording < 0:
        parser.error("--from-recording: SECONDS must be > 0")
    return DemoConfig(samples=args.samples, epochs=tuple(args.epochs), serve_s=args.serve_seconds,
                      output_dir=args.output_dir, keep_data=args.keep_data, record_s=args.from_recording)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    started = time.monotonic()
    demo = Demo(config)
    failed = True
    try:
        with interrupts_as_keyboard_interrupt():
            demo.run()
        failed = False
    except KeyboardInterrupt:
        # Stopping on request is a normal end (exit code 0), as for every kairo process; --keep-data keeps the logs.
        failed = False
        print("\n[demo] interrupted; stopping every process it started", file=sys.stderr)
        return 0
    except Exception as exc:  # noqa: BLE001 - the demo reports any failure plainly, then cleans up
        print(f"\n[demo] failed: {exc}", file=sys.stderr)
        return 1
    finally:
        StopRequest().install()  # a second Ctrl-C must not cut the cleanup short
        demo.close(failed)
        ignore_stop_signals()
    print(f"[demo] done in {time.monotonic() - started:.0f} s; no kairo process left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
