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
from inference_common import GROUP, BenchBackend, Loop, percentiles, start, timed
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from kairo_interfaces.msg import Prediction
from kairo_ros.testing.graph import SpinningNode, wait_until

QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
FLOOD_CHUNKS = 10


def joint_state(index: int) -> JointState:
    msg = JointState(position=[0.1, 0.2, 0.3])
    msg.header.stamp.sec = index
    return msg


def measure(echo: Loop, served: Loop, args: argparse.Namespace, ort: tuple[float, float],
            round_index: int) -> tuple[float, float, float, int]:
    """One round, both paths interleaved: (p50 ratio, p99 ratio, rate ratio, inference drops)."""
    base = 20_000 + round_index * 1_000_000
    results: dict[str, list[float]] = {"echo": [], "inference": []}
    for i in range(args.pings):  # interleaved, so both see the same machine load
        results["echo"].append(echo.ping(base + i))
        results["inference"].append(served.ping(base + i))
    echo_p50, echo_p99 = percentiles(results["echo"])
    inf_p50, inf_p99 = percentiles(results["inference"])
    # Floods in interleaved chunks too, so a burst of load elsewhere hits both alike.
    totals = {"echo": [0.0, 0, 0], "inference": [0.0, 0, 0]}  # seconds, answered, dropped
    chunk = max(args.window, args.flood // FLOOD_CHUNKS)
    for c in range(0, args.flood, chunk):
        for name, loop in (("echo", echo), ("inference", served)):
            count = min(chunk, args.flood - c)
            rate, dropped = loop.flood(count, args.window, base + 100_000 + c)
            totals[name][0] += (count - dropped) / rate
            totals[name][1] += count - dropped
            totals[name][2] += dropped
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
    return inf_p50 / base_p50, inf_p99 / base_p99, inf_rate / echo_rate, inf_dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--flood", type=int, default=4000)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", type=pathlib.Path, help="a manipulation model exported by the backend")
    parser.add_argument("--echo", choices=("single", "multi", "lean"), default="single")
    args = parser.parse_args()
    try:
        if args.model is not None:
            path, model_id, version = args.model, args.model.stem, "(given)"
        else:
            backend = BenchBackend()
            dataset = backend.cli("datasets", "create-demo", "manipulation", "--workspace", "bench",
                                  "--samples", "500")
            model_id, version = backend.train("manipulation", dataset)
            path = backend.download(model_id, version)
            backend.process.stop()  # not needed any more: keep the CPU for the measurement

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
        with SpinningNode("kairo_bench_client") as ros:
            echo = Loop(ros, "/bench/echo_in", "/bench/echo_out", JointState, joint_state)
            served = Loop(ros, "/joint_states", "/kairo/kairo_inference/prediction", Prediction, joint_state)
            target = ros.node.create_publisher(PointStamped, "/target_point", QOS)
            wait_until(lambda: target.get_subscription_count() > 0, 30, "kairo_inference on /target_point")
            target.publish(PointStamped())
            wait_until(lambda: (served.send(0), served.answered > 0)[1], 30, "a first prediction", period_s=0.05)

            for i in range(50):  # warm up both paths
                echo.ping(10_000 + i)
                served.ping(10_000 + i)
            print(f"model {path} ({model_id} {version}, manipulation MLP), echo executor {args.echo}, "
                  f"{args.pings} round trips, flood {args.flood} msgs window {args.window}")
            print(f"raw onnxruntime run          p50 {ort_p50:8.1f} us   p99 {ort_p99:8.1f} us")
            rounds = [measure(echo, served, args, (ort_p50, ort_p99), r) for r in range(args.rounds)]
        assert echo_node.alive and inference.alive
        if args.rounds > 1:
            p50s, p99s, rates = (np.array([r[k] for r in rounds]) for k in range(3))
            drops = sum(r[3] for r in rounds)
            print(f"median of {args.rounds} rounds: p50 ratio {np.median(p50s):.2f}x  p99 ratio "
                  f"{np.median(p99s):.2f}x  (goal <= 1.15); rate ratio {np.median(rates):.2f} (goal >= 0.9); "
                  f"kairo_inference drops {drops}")
        return 0
    finally:
        GROUP.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
