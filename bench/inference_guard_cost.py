"""What the safety guard costs kairo_inference per message, in instructions (callgrind), guard on vs off.

    python bench/inference_guard_cost.py [--model PATH] [--n1 100] [--n2 500] [--wall-pings 1000]

On a shared 2-core machine wall-clock ratios swing by more than the 2 %
the guard may cost, so this counts instructions, which other load does not
move. The model is trained by the real backend (manipulation, as
bench/inference_latency.py does), so its envelope is real and the guard
checks real ranges; --model reuses one a previous run trained.

The count: kairo_inference's real DataPath (rclpy node, onnxruntime model,
output and ~/prediction publishers, a ~/prediction reader) twice in one
process, one wired with the guard and one without (what
KAIRO_INFERENCE_GUARD=off does), their subscription callbacks called
directly: the node's per-message work without DDS's delivery and the wait,
whose instruction counts follow the wall clock (heartbeats, timeouts) and
swing by 30 % between runs when counted over the whole node process. Under
`valgrind --tool=callgrind`, uninstrumented until warmed up, each state's
counters are zeroed, dumped after N1 messages and again after N2 more;
(I(N2) - I(N1)) / (N2 - N1) cancels the fixed cost of zeroing and dumping.
Printed: instructions per message guard on and off and the ratio (goal:
within 2 %; repeat runs agree within about 1 %). For reference: the same
data paths' time per message natively, and two kairo_inference processes
over DDS as in inference_latency.py (round trip p50, sustained rate, the
nodes' own latency and CPU per message), which load on the machine blurs.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

import rclpy
from geometry_msgs.msg import PointStamped
from inference_common import GROUP, QOS, WORK, Loop, NodeLatency, cpu_seconds, model_file, percentiles, start
from inference_latency import joint_state
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from kairo_interfaces.msg import Prediction
from kairo_ros.inference.data_path import DataPath, NodeLoop
from kairo_ros.inference.diagnostics import InferenceStats
from kairo_ros.inference.guard import GUARD_ENV, GuardSettings
from kairo_ros.inference.model_session import ModelSession
from kairo_ros.inference.node import OUTPUT_QOS, PREDICTION_QOS
from kairo_ros.inference.wiring import build_wiring, input_qos
from kairo_ros.testing.graph import SpinningNode, wait_until
from kairo_ros.testing.processes import ChildProcess

GUARD_STATES = ("on", "off")
FLOOD_WINDOW = 20


class Served:
    """One kairo_inference process (guard on or off) in namespace /bench_<guard>, and its client loop."""

    def __init__(self, guard: str, model: pathlib.Path) -> None:
        self.guard = guard
        self.ns = f"/bench_guard_{guard}"
        argv = ["kairo_inference", "--ros-args", "-r", f"__ns:={self.ns}", "-p", f"model_path:={model}",
                "-p", "input_qos:=reliable", "-p",
                f'topic_remaps:=["joint_positions:={self.ns}/joint_states", "target:={self.ns}/target_point", '
                f'"joint_commands:={self.ns}/commands"]', "--log-level", "warn"]
        self.process: ChildProcess = start(f"kairo_inference_guard_{guard}", argv, env={GUARD_ENV: guard})
        self.loop: Loop | None = None
        self.latency: NodeLatency | None = None

    def connect(self, ros: SpinningNode, answer_timeout_s: float) -> Loop:
        """Subscribe, give the node its target, and wait for a first answer."""
        # The node subscribes to its inputs together once its model is wired: wait for that first.
        target = ros.node.create_publisher(PointStamped, f"{self.ns}/target_point", QOS)
        wait_until(lambda: self.running() and target.get_subscription_count() > 0, answer_timeout_s,
                   f"{self.ns} on its target", period_s=0.2)
        prediction = f"{self.ns}/kairo_inference/prediction"
        self.loop = Loop(ros, f"{self.ns}/joint_states", prediction, Prediction, joint_state,
                         timeout_s=answer_timeout_s)
        self.latency = NodeLatency(ros, prediction)
        target.publish(PointStamped())
        loop = self.loop
        wait_until(lambda: (loop.send(0), loop.answered > 0)[1], answer_timeout_s,
                   f"a first prediction from {self.ns}", period_s=max(0.05, answer_timeout_s / 200))
        return loop

    def running(self) -> bool:
        """True while the process runs; RuntimeError with its output when it ended."""
        if not self.process.alive:
            raise RuntimeError(f"{self.process.name} exited ({self.process.popen.returncode}):\n"
                               f"{self.process.tail()}")
        return True



def dumped_instructions(out_file: pathlib.Path) -> list[int]:
    """The instruction count of every dump so far, in order (callgrind names them <out>.1, .2, ...)."""
    dumps = sorted((p for p in out_file.parent.glob(out_file.name + ".*") if p.suffix[1:].isdigit()),
                   key=lambda p: int(p.suffix[1:]))
    counts = []
    for dump in dumps:
        found = re.search(r"^summary: (\d+)", dump.read_text(errors="replace"), re.MULTILINE)
        assert found, f"no instruction summary in {dump}"
        counts.append(int(found.group(1)))
    return counts


def wall_clock(model: pathlib.Path, args: argparse.Namespace) -> None:
    """For reference: the two nodes natively, interleaved (load on the machine blurs these)."""
    nodes = {guard: Served(guard, model) for guard in GUARD_STATES}
    with SpinningNode("kairo_bench_guard_wall") as ros:
        loops = {guard: served.connect(ros, 60) for guard, served in nodes.items()}
        for i in range(50):
            for loop in loops.values():
                loop.ping(1_000 + i)
        for served in nodes.values():
            assert served.latency is not None
            served.latency.take()
        cpu_before = {guard: cpu_seconds(served.process.popen.pid) for guard, served in nodes.items()}
        answered_before = {guard: loop.answered for guard, loop in loops.items()}
        trips: dict[str, list[float]] = {guard: [] for guard in GUARD_STATES}
        order = list(loops.items())
        for i in range(args.wall_pings):  # each first in turn, so both see the same load
            for guard, loop in order[i % 2:] + order[:i % 2]:
                trips[guard].append(loop.ping(10_000 + i))
        in_node = {guard: percentiles(served.latency.take())[0]  # type: ignore[union-attr]
                   for guard, served in nodes.items()}
        seconds = {guard: 0.0 for guard in GUARD_STATES}
        answered = {guard: 0 for guard in GUARD_STATES}
        chunk = max(FLOOD_WINDOW, args.wall_flood // 10)
        for turn, first in enumerate(range(0, args.wall_flood, chunk)):
            for guard, loop in order[turn % 2:] + order[:turn % 2]:
                rate, dropped = loop.flood(chunk, FLOOD_WINDOW, 100_000 + first)
                seconds[guard] += (chunk - dropped) / rate
                answered[guard] += chunk - dropped
        cpu = {guard: (cpu_seconds(nodes[guard].process.popen.pid) - cpu_before[guard])
               / (loops[guard].answered - answered_before[guard]) for guard in GUARD_STATES}
    p50 = {guard: percentiles(trips[guard])[0] for guard in GUARD_STATES}
    rate = {guard: answered[guard] / seconds[guard] for guard in GUARD_STATES}
    print(f"wall clock, for reference ({args.wall_pings} round trips, {args.wall_flood} flooded, interleaved; "
          f"other load on the machine moves these by 5-30 %):")
    print(f"  round trip p50   on {p50['on']:8.1f} us   off {p50['off']:8.1f} us   ratio {p50['on'] / p50['off']:.3f}")
    print(f"  sustained rate   on {rate['on']:8.0f} Hz   off {rate['off']:8.0f} Hz   ratio "
          f"{rate['on'] / rate['off']:.3f}")
    print(f"  inside the node  on {in_node['on']:8.1f} us   off {in_node['off']:8.1f} us   "
          f"({in_node['on'] - in_node['off']:+.1f} us)")
    print(f"  CPU per message  on {cpu['on'] * 1e6:8.1f} us   off {cpu['off'] * 1e6:8.1f} us   ratio "
          f"{cpu['on'] / cpu['off']:.3f}", flush=True)
    for served in nodes.values():
        served.process.stop()


class DrivenDataPath:
    """kairo_inference's real DataPath in this process, its subscription callbacks called directly.

    The callbacks are what the data thread runs for each message it takes (`_on_primary`: read, guard,
    onnxruntime, the output and ~/prediction publishers), so this is the node's per-message work without
    DDS's delivery and the wait, and without their timing noise.
    """

    def __init__(self, guard: str, model: pathlib.Path) -> None:
        self.owner = Node("kairo_inference", namespace=f"/bench_guard_{guard}_data_path")
        self.model = ModelSession.load(model, ["CPUExecutionProvider"], 1)
        self.data = DataPath(self.owner, lambda: self.model, InferenceStats(),
                             on_bad_input=self._fail, on_inference_failed=lambda _model, exc: self._fail("", str(exc)))
        self.data.open_prediction(PREDICTION_QOS)
        self.data.wire(build_wiring(self.model.features), input_qos("reliable"), OUTPUT_QOS,
                       GuardSettings() if guard == "on" else None)
        # A reader of ~/prediction, as the bench's client, so that each prediction is serialized and written.
        # Best effort, so that no acknowledgement (timed by DDS's heartbeats, so by the wall clock) changes
        # what a message costs.
        self.predictions = self.owner.create_subscription(
            Prediction, "~/prediction", lambda _msg: None,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        by_topic = {sub.topic_name.rsplit("/", 1)[-1]: sub for sub in self.data.node.subscriptions}
        self.on_joint_state = by_topic["joint_states"].callback
        by_topic["target_point"].callback(PointStamped())
        self.stamp = 0

    @staticmethod
    def _fail(code: str, message: str) -> None:
        raise RuntimeError(f"the data path refused a benchmark message: {code} {message}")

    def answer(self, count: int) -> None:
        for _ in range(count):
            self.stamp += 1
            self.on_joint_state(joint_state(self.stamp))

    def close(self) -> None:
        self.data.close_prediction()  # first, as the node does: shutdown() stops the loop it would wake
        self.data.shutdown()
        self.owner.destroy_node()


def data_path_child(args: argparse.Namespace) -> int:
    """Both guard states' data paths in this process, warmed up.

    --data-path-child timing: natively, the p50 of each state's time per message, the states taking
    turns message by message so that both see the same load; prints them as JSON. --data-path-child
    serve: answers `<guard> <count>` lines from stdin with `done`, for the parent to count the
    instructions between them (callgrind_control, which finds a valgrind process from outside only).
    """
    # The data threads wait on their (idle) subscriptions; without the periodic wake-up, their wait set
    # is not rebuilt a number of times that depends on how long the counting takes.
    NodeLoop.WAIT_TIMEOUT_NS = 3_600_000_000_000
    rclpy.init()
    paths = {guard: DrivenDataPath(guard, args.model) for guard in GUARD_STATES}
    for path in paths.values():
        # Past PREDICTION_QOS's depth, so that the ~/prediction writer's history is full: a steady state.
        path.answer(PREDICTION_QOS.depth + args.warm_up)
    if args.data_path_child == "timing":
        seconds: dict[str, list[float]] = {guard: [] for guard in GUARD_STATES}
        for i in range(args.timed):
            for guard in GUARD_STATES[i % 2:] + GUARD_STATES[:i % 2]:
                started = time.perf_counter()
                paths[guard].answer(1)
                seconds[guard].append(time.perf_counter() - started)
        print(json.dumps({guard: percentiles(seconds[guard])[0] for guard in GUARD_STATES}))
    else:
        print("ready", flush=True)
        for line in sys.stdin:
            guard, count = line.split()
            paths[guard].answer(int(count))
            print("done", flush=True)
    for path in paths.values():
        path.close()
    rclpy.shutdown()
    return 0


def count_data_path(model: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    """Instructions per message of each guard state's data path, under callgrind."""
    out_file = WORK / "callgrind.data_path.out"
    # Uninstrumented until the counting starts (callgrind_control -i on): start-up runs 10x faster.
    with (WORK / "data_path_child.log").open("wb") as log:
        child = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--dump-instr=no", "--vgdb=yes",
             "--instr-atstart=no", sys.executable, __file__, "--model", str(model), "--warm-up", str(args.warm_up),
             "--data-path-child", "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    assert child.stdin is not None and child.stdout is not None

    def expect(line: str) -> None:
        got = child.stdout.readline().strip()  # type: ignore[union-attr]
        if got != line:
            raise RuntimeError(f"the data path child said {got!r}, not {line!r}; see {WORK}/data_path_child.log")

    def control(*command: str) -> None:
        said = subprocess.run(["callgrind_control", *command, str(child.pid)], capture_output=True, text=True,
                              timeout=300).stdout
        if "Error" in said:
            raise RuntimeError(f"callgrind_control {' '.join(command)}: {said.strip()}")

    def answer(guard: str, count: int) -> None:
        child.stdin.write(f"{guard} {count}\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        expect("done")

    try:
        expect("ready")
        control("--instr=on")
        for guard in GUARD_STATES:
            answer(guard, args.warm_up)  # the same work once instrumented, before the counting
            control("--zero")
            answer(guard, args.n1)
            control("--dump")
            answer(guard, args.n2)
            control("--dump")
        child.stdin.close()
        child.wait(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    counts = dumped_instructions(out_file)
    return {guard: (counts[2 * k + 1] - counts[2 * k]) / (args.n2 - args.n1) for k, guard in enumerate(GUARD_STATES)}


def time_data_path(model: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    """The p50 time per message of each guard state's data path, natively (data_path_child's timing)."""
    done = subprocess.run([sys.executable, __file__, "--model", str(model), "--warm-up", str(args.warm_up),
                           "--timed", str(args.timed), "--data-path-child", "timing"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the data path timing failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {guard: float(value) for guard, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, help="a manipulation model exported by the backend")
    parser.add_argument("--n1", type=int, default=100, help="messages per state before the first dump")
    parser.add_argument("--n2", type=int, default=500, help="messages per state before the second dump")
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument("--timed", type=int, default=5000, help="messages per state in the in-process timing")
    parser.add_argument("--wall-pings", type=int, default=1000, help="0: skip the two nodes over DDS")
    parser.add_argument("--wall-flood", type=int, default=4000)
    parser.add_argument("--data-path-child", choices=("serve", "timing"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data_path_child:
        return data_path_child(args)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    assert args.n2 > args.n1 > 0, "--n2 must be above --n1, both positive"
    try:
        model = model_file(args.model, "manipulation", 500)
        print(f"model {model} (manipulation MLP, its envelope from the training data)", flush=True)
        counts = count_data_path(model, args)
        print(f"instructions per message of the data path (callgrind, ({args.n2} - {args.n1} messages)):")
        print(f"  guard on {counts['on']:10,.0f}   off {counts['off']:10,.0f}   ({counts['on'] - counts['off']:+,.0f}) "
              f"ratio {counts['on'] / counts['off']:.4f}   (goal within 2 %)", flush=True)
        seconds = time_data_path(model, args)
        print(f"time per message of the data path, p50 of {args.timed}, natively, in turns (for reference):")
        print(f"  guard on {seconds['on']:8.1f} us   off {seconds['off']:8.1f} us   "
              f"({seconds['on'] - seconds['off']:+.1f} us) ratio {seconds['on'] / seconds['off']:.3f}", flush=True)
        if args.wall_pings > 0:
            wall_clock(model, args)
        return 0
    finally:
        GROUP.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
