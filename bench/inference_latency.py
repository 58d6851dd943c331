"""kairo_inference round trip and sustained rate, against an rclpy echo node plus raw onnxruntime.

    python bench/inference_latency.py [--pings 1000] [--flood 4000] [--rounds 3] [--model PATH]
                                      [--echo single|multi|lean]

A model trained by the real backend (manipulation, 2 epochs) is served by
kairo_inference in its own process (model_path, reliable input QoS). The
benchmark measures, in the same run:
- round trip JointState -> Prediction (one message in flight), p50 and p99,
  against (echo node round trip + one raw onnxruntime run of the same
  model in this process): goal ratio <= 1.15 (p50 and p99);
- the highest sustained rate (a window of messages in flight, every one
  answered) against the echo node's: goal ratio >= 0.9, no drops.
The machine is shared and noisy: --rounds repeats both measurements on the
same processes and the summary gives the median of the rounds' ratios.

The safety guard's cost: a second kairo_inference serves the same model with
the guard off (KAIRO_INFERENCE_GUARD=off, a benchmark-only switch) on topics
of its own, measured interleaved with the first; each round prints the
guard-on / guard-off ratios of p50, p99 and sustained rate (goal: within
2 %), and the two nodes' own latency (Prediction.latency, received ->
published), which DDS noise does not blur, and the CPU time each node
process spends per answered message (every thread, from /proc schedstat),
which other load on the machine barely moves. The paths take turns at going
first, so neither is favoured. --guard on skips the second node.
--model reuses a model a previous run trained (its path is printed), which
skips the backend. --echo picks the baseline's executor (see
inference_echo_node.py); the default is a plain node under rclpy.spin.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import onnxruntime as ort
from geometry_msgs.msg import PointStamped
from inference_common import GROUP, Loop, NodeLatency, cpu_seconds, model_file, percentiles, start, timed
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from kairo_interfaces.msg import Prediction
from kairo_ros.inference.guard import GUARD_ENV
from kairo_ros.testing.graph import SpinningNode, wait_until

QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
FLOOD_CHUNKS = 10
in_node: dict[str, NodeLatency] = {}  # with --guard both: the node's own latency, guard on and off
node_pids: dict[str, int] = {}  # with --guard both: the two kairo_inference processes, guard on and off


def joint_state(index: int) -> JointState:
    msg = JointState(position=[0.1, 0.2, 0.3])
    msg.header.stamp.sec = index
    return msg



def measure(echo: Loop, served: Loop, unguarded: Loop | None, args: argparse.Namespace,
            ort: tuple[float, float], round_index: int) -> tuple[float, ...]:
    """One round, all paths interleaved: (p50 ratio, p99 ratio, rate ratio, inference drops) and, with
    `unguarded`, the guard-on / guard-off ratios (p50, p99, rate)."""
    base = 20_000 + round_index * 1_000_000
    for latency in in_node.values():
        latency.take()
    loops = {"echo": echo, "inference": served, **({"unguarded": unguarded} if unguarded else {})}
    cpu_before = {name: cpu_seconds(pid) for name, pid in node_pids.items()}
    answered_before = {name: loop.answered for name, loop in loops.items()}
    results: dict[str, list[float]] = {name: [] for name in loops}
    order = list(loops.items())
    for i in range(args.pings):  # interleaved, so all see the same machine load, each first in turn
        for name, loop in order[i % len(order):] + order[:i % len(order)]:
            results[name].append(loop.ping(base + i))
    node_p50 = {name: percentiles(latency.take())[0] for name, latency in in_node.items() if latency.samples_s}
    echo_p50, echo_p99 = percentiles(results["echo"])
    inf_p50, inf_p99 = percentiles(results["inference"])
    # Floods in interleaved chunks too, so a burst of load elsewhere hits all alike.
    totals = {name: [0.0, 0, 0] for name in loops}  # seconds, answered, dropped
    chunk = max(args.window, args.flood // FLOOD_CHUNKS)
    for turn, c in enumerate(range(0, args.flood, chunk)):
        for name, loop in order[turn % len(order):] + order[:turn % len(order)]:
            count = min(chunk, args.flood - c)
            rate, dropped = loop.flood(count, args.window, base + 100_000 + c)
            totals[name][0] += (count - dropped) / rate
            totals[name][1] += count - dropped
            totals[name][2] += dropped
    # CPU per answered message of each kairo_inference over the whole round (pings and floods).
    cpu_per_msg = {name: (cpu_seconds(pid) - cpu_before[name])
                   / max(1, loops["inference" if name == "on" else "unguarded"].answered
                         - answered_before["inference" if name == "on" else "unguarded"])
                   for name, pid in node_pids.items()}
    echo_rate, echo_dropped = totals["echo"][1] / totals["echo"][0], int(totals["echo"][2])
    inf_rate, inf_dropped = totals["inference"][1] / totals["inference"][0], int(totals["inference"][2])
    base_p50, base_p99 = echo_p50 + ort[0], echo_p99 + ort[1]
    print(f"round {round_index + 1}")
    print(f"  echo node round trip         p50 {echo_p50:8.1f} us   p99 {echo_p99:8.1f} us")
    print(f"  baseline (echo + onnxruntime) p50 {base_p50:7.1f} us   p99 {base_p99:8.1f} us")
    print(f"  kairo_inference round trip   p50 {inf_p50:8.1f} us   p99 {inf_p99:8.1f} us")
    print(f"  ratio inference / baseline   p50 {inf_p50 / base_p50:8.2f}x     p99 {inf_p99 / base_p99:8.2f}x"
          f"   (goal <= 1.15)")
    print(f"  sustained rate: echo {echo_rate:8.0f} Hz (dropped {echo_dropped}), kairo_inference "
          f"{inf_rate:8.0f} Hz (dropped {inf_dropped}); ratio {inf_rate / echo_rate:.2f} (goal >= 0.9, no drops)",
          flush=True)
    if unguarded is None:
        return inf_p50 / base_p50, inf_p99 / base_p99, inf_rate / echo_rate, inf_dropped
    off_p50, off_p99 = percentiles(results["unguarded"])
    off_rate = totals["unguarded"][1] / totals["unguarded"][0]
    print(f"  guard off round trip         p50 {off_p50:8.1f} us   p99 {off_p99:8.1f} us; rate {off_rate:8.0f} Hz "
          f"(dropped {int(totals['unguarded'][2])})")
    print(f"  guard on / off               p50 {inf_p50 / off_p50:8.3f}x     p99 {inf_p99 / off_p99:8.3f}x"
          f"   rate {inf_rate / off_rate:.3f}   (goal within 2 %)")
    print(f"  inside the node (received -> published) p50: guard on {node_p50['on']:.1f} us, off "
          f"{node_p50['off']:.1f} us ({node_p50['on'] - node_p50['off']:+.1f} us)")
    cpu_ratio = cpu_per_msg["on"] / cpu_per_msg["off"]
    print(f"  CPU per message of the node process: guard on {cpu_per_msg['on'] * 1e6:.1f} us, off "
          f"{cpu_per_msg['off'] * 1e6:.1f} us; ratio {cpu_ratio:.3f}   (goal within 2 %)", flush=True)
    return (inf_p50 / base_p50, inf_p99 / base_p99, inf_rate / echo_rate, inf_dropped,
            inf_p50 / off_p50, inf_p99 / off_p99, inf_rate / off_rate, node_p50["on"] - node_p50["off"], cpu_ratio)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--flood", type=int, default=4000)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", type=pathlib.Path, help="a manipulation model exported by the backend")
    parser.add_argument("--echo", choices=("single", "multi", "lean"), default="single")
    parser.add_argument("--guard", choices=("both", "on"), default="both",
                        help="both: also measure a node with the safety guard off, and print the ratios")
    args = parser.parse_args()
    try:
        path = model_file(args.model, "manipulation", 500)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {"joint_positions": np.array([[0.1, 0.2, 0.3]], np.float32),
                 "target": np.array([[0.3, 0.1]], np.float32)}
        timed(lambda: session.run(None, feeds), 200)
        ort_p50, ort_p99 = percentiles(timed(lambda: session.run(None, feeds), 5000))

        echo_node = start("echo", [sys.executable, str(pathlib.Path(__file__).with_name("inference_echo_node.py")),
                                   *([args.echo] if args.echo != "single" else [])])
        inference = start("kairo_inference", ["kairo_inference", "--ros-args", "-p", f"model_path:={path}",
                                              "-p", "input_qos:=reliable", "--log-level", "warn"])
        unguarded_node = None
        if args.guard == "both":
            unguarded_node = start("kairo_inference_unguarded", [
                "kairo_inference", "--ros-args", "-r", "__ns:=/bench_unguarded", "-p", f"model_path:={path}",
                "-p", "input_qos:=reliable", '-p', 'topic_remaps:=["joint_positions:=/bench_unguarded/joint_states", '
                '"target:=/bench_unguarded/target_point", "joint_commands:=/bench_unguarded/commands"]',
                "--log-level", "warn"], env={GUARD_ENV: "off"})
        with SpinningNode("kairo_bench_client") as ros:
            echo = Loop(ros, "/bench/echo_in", "/bench/echo_out", JointState, joint_state)
            served = Loop(ros, "/joint_states", "/kairo/kairo_inference/prediction", Prediction, joint_state)
            target = ros.node.create_publisher(PointStamped, "/target_point", QOS)
            wait_until(lambda: target.get_subscription_count() > 0, 30, "kairo_inference on /target_point")
            target.publish(PointStamped())
            wait_until(lambda: (served.send(0), served.answered > 0)[1], 30, "a first prediction", period_s=0.05)
            unguarded = None
            in_node.clear()
            node_pids.clear()
            if unguarded_node is not None:
                node_pids.update(on=inference.popen.pid, off=unguarded_node.popen.pid)
                in_node.update(on=NodeLatency(ros, "/kairo/kairo_inference/prediction"),
                               off=NodeLatency(ros, "/bench_unguarded/kairo_inference/prediction"))
                unguarded = Loop(ros, "/bench_unguarded/joint_states", "/bench_unguarded/kairo_inference/prediction",
                                 Prediction, joint_state)
                target_off = ros.node.create_publisher(PointStamped, "/bench_unguarded/target_point", QOS)
                wait_until(lambda: target_off.get_subscription_count() > 0, 30, "the unguarded node's target")
                target_off.publish(PointStamped())
                wait_until(lambda: (unguarded.send(0), unguarded.answered > 0)[1], 30,
                           "a first prediction with the guard off", period_s=0.05)

            for i in range(50):  # warm up both paths
                echo.ping(10_000 + i)
                served.ping(10_000 + i)
                if unguarded is not None:
                    unguarded.ping(10_000 + i)
            print(f"model {path} (manipulation MLP), echo executor {args.echo}, "
                  f"{args.pings} round trips, flood {args.flood} msgs window {args.window}")
            print(f"raw onnxruntime run          p50 {ort_p50:8.1f} us   p99 {ort_p99:8.1f} us")
            rounds = [measure(echo, served, unguarded, args, (ort_p50, ort_p99), r) for r in range(args.rounds)]
        assert echo_node.alive and inference.alive and (unguarded_node is None or unguarded_node.alive)
        if args.rounds > 1:
            p50s, p99s, rates = (np.array([r[k] for r in rounds]) for k in range(3))
            drops = sum(r[3] for r in rounds)
            print(f"median of {args.rounds} rounds: p50 ratio {np.median(p50s):.2f}x  p99 ratio "
                  f"{np.median(p99s):.2f}x  (goal <= 1.15); rate ratio {np.median(rates):.2f} (goal >= 0.9); "
                  f"kairo_inference drops {drops}")
            if unguarded is not None:
                on_off = [np.array([r[k] for r in rounds]) for k in (4, 5, 6)]
                print(f"median of {args.rounds} rounds, guard on / off: p50 {np.median(on_off[0]):.3f}x  p99 "
                      f"{np.median(on_off[1]):.3f}x  rate {np.median(on_off[2]):.3f}  (goal within 2 %); inside "
                      f"the node {np.median([r[7] for r in rounds]):+.1f} us; CPU per message "
                      f"{np.median([r[8] for r in rounds]):.3f}x")
        return 0
    finally:
        GROUP.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
