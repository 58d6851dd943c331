"""What a shadow model costs kairo_inference's serving path: the same node with and without one.

    python bench/inference_shadow.py [--pings 1000] [--flood 4000] [--window 20] [--rounds 3]

The real backend trains two manipulation versions (v1 active, v2 not). Two
kairo_inference processes serve the model as fleet robots (model_id,
robot_id, heartbeats every second), each on topics of its own; a shadow
deployment makes one of them run v2 beside v1 on every input. Measured in
the same run, interleaved (each path first in turn), per round:
- round trip JointState -> Prediction, p50 and p99: shadow / plain ratio
  (goal <= 1.05; the candidate runs after the answer is published);
- the highest sustained rate with a window of messages in flight: shadow /
  plain ratio (goal >= 0.95), and the active path's drops (goal: none);
- the nodes' own latency (Prediction.latency, received -> published) and
  CPU time per answered message (every thread, /proc schedstat);
- what the shadow measured and skipped (its queue drops inputs when the
  candidate falls behind, never the active path's).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from geometry_msgs.msg import PointStamped
from inference_common import GROUP, QOS, BenchBackend, Loop, NodeLatency, cpu_seconds, percentiles, start
from sensor_msgs.msg import JointState

from kairo_interfaces.msg import Prediction, ShadowReport
from kairo_ros.testing.graph import SpinningNode, wait_until

PATHS = ("plain", "shadow")
FLOOD_CHUNKS = 10


def joint_state(index: int) -> JointState:
    msg = JointState(position=[0.1, 0.2, 0.3])
    msg.header.stamp.sec = index
    return msg


def start_robot(backend: BenchBackend, model_id: str, path: str) -> object:
    robot = f"rob_bench{path}"
    return start(f"kairo_inference_{path}", [
        "kairo_inference", "--ros-args", "-r", f"__ns:=/{path}", "-p", f"api_url:={backend.url}",
        "-p", f"model_id:={model_id}", "-p", f"robot_id:={robot}", "-p", "heartbeat_period_s:=1.0",
        "-p", "poll_period_s:=0.0", "-p", f"cache_dir:={backend.data_dir.parent / ('cache_' + path)}",
        "-p", "input_qos:=reliable", "-p",
        f'topic_remaps:=["joint_positions:=/{path}/joint_states", "target:=/{path}/target_point", '
        f'"joint_commands:=/{path}/commands"]', "--log-level", "warn"], env={"KAIRO_API_KEY": backend.key})



def measure(loops: dict[str, Loop], own: dict[str, NodeLatency], pids: dict[str, int], reports: list[ShadowReport],
            args: argparse.Namespace, round_index: int) -> tuple[float, ...]:
    base = 20_000 + round_index * 1_000_000
    for latency in own.values():
        latency.take()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    answered_before = {name: loop.answered for name, loop in loops.items()}
    shadow_before = reports[-1]
    order = list(loops.items())
    trips: dict[str, list[float]] = {name: [] for name in loops}
    for i in range(args.pings):
        for name, loop in order[i % 2:] + order[:i % 2]:
            trips[name].append(loop.ping(base + i))
    inside = {name: percentiles(latency.take())[0] for name, latency in own.items()}
    totals: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in loops}  # seconds, answered, dropped
    chunk = max(args.window, args.flood // FLOOD_CHUNKS)
    for turn, c in enumerate(range(0, args.flood, chunk)):
        for name, loop in order[turn % 2:] + order[:turn % 2]:
            count = min(chunk, args.flood - c)
            rate, dropped = loop.flood(count, args.window, base + 100_000 + c)
            totals[name][0] += (count - dropped) / rate
            totals[name][1] += count - dropped
            totals[name][2] += dropped
    cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / max(1, loops[name].answered - answered_before[name])
           for name, pid in pids.items()}
    wait_until(lambda: reports[-1].stamp != shadow_before.stamp, 10, "a fresh ShadowReport")
    wait_until(lambda: len(reports) > 1 and reports[-1].samples == reports[-2].samples, 30,
               "the shadow caught up (two equal reports)")
    shadow = reports[-1]
    p50 = {name: percentiles(trips[name])[0] for name in loops}
    p99 = {name: percentiles(trips[name])[1] for name in loops}
    rate = {name: totals[name][1] / totals[name][0] for name in loops}
    drops = {name: int(totals[name][2]) for name in loops}
    ran = shadow.samples - shadow_before.samples
    skipped = shadow.dropped - shadow_before.dropped
    print(f"round {round_index + 1}")
    for name in PATHS:
        print(f"  {name:6s} round trip p50 {p50[name]:8.1f} us  p99 {p99[name]:8.1f} us; rate {rate[name]:7.0f} Hz "
              f"(dropped {drops[name]}); inside the node p50 {inside[name]:6.1f} us; CPU/msg "
              f"{cpu[name] * 1e6:6.1f} us")
    print(f"  shadow / plain: p50 {p50['shadow'] / p50['plain']:.3f}x  p99 {p99['shadow'] / p99['plain']:.3f}x "
          f"(goal <= 1.05); rate {rate['shadow'] / rate['plain']:.3f} (goal >= 0.95, no drops); inside the node "
          f"{inside['shadow'] - inside['plain']:+.1f} us; CPU/msg {cpu['shadow'] / cpu['plain']:.2f}x")
    print(f"  the shadow ran v2 on {ran} inputs and skipped {skipped} (queue full); divergence "
          f"{shadow.divergence:.4g}, candidate p50 {shadow.latency_p50_ms * 1000:.1f} us", flush=True)
    return (p50["shadow"] / p50["plain"], p99["shadow"] / p99["plain"], rate["shadow"] / rate["plain"],
            drops["shadow"], inside["shadow"] - inside["plain"], cpu["shadow"] / cpu["plain"], skipped)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--flood", type=int, default=4000)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    try:
        backend = BenchBackend()
        dataset = backend.cli("datasets", "create-demo", "manipulation", "--workspace", "bench", "--samples", "500")
        model_id, v1 = backend.train("manipulation", dataset)
        _, v2 = backend.train("manipulation", dataset, promote=False, epochs=3)  # other weights than v1's
        nodes = {path: start_robot(backend, model_id, path) for path in PATHS}
        with SpinningNode("kairo_bench_shadow") as ros:
            loops: dict[str, Loop] = {}
            for path in PATHS:
                loops[path] = Loop(ros, f"/{path}/joint_states", f"/{path}/kairo_inference/prediction", Prediction,
                                   joint_state, timeout_s=10.0)
                target = ros.node.create_publisher(PointStamped, f"/{path}/target_point", QOS)
                wait_until(lambda t=target: t.get_subscription_count() > 0, 30, f"{path} on its target topic")
                target.publish(PointStamped())
                wait_until(lambda p=path: (loops[p].send(0), loops[p].answered > 0)[1], 60,
                           f"a first prediction of {path}", period_s=0.05)
            wait_until(lambda: backend.api.get("/v1/robots/rob_benchshadow").status_code == 200, 30, "a heartbeat")
            created = backend.api.post(f"/v1/models/{model_id}/deployments", json={
                "version": v2, "mode": "shadow", "robots": ["rob_benchshadow"],
                "guard": {"min_observation_s": 86400, "report_within_s": 86400, "max_error_rate": 1.0,
                          "max_drop_rate": 1.0}})
            assert created.status_code == 201, created.text
            reports: list[ShadowReport] = []
            ros.node.create_subscription(ShadowReport, "/shadow/kairo_inference/shadow", reports.append, QOS)
            wait_until(lambda: bool(reports) and reports[-1].candidate_version == v2, 60, "the shadow running v2")
            own = {path: NodeLatency(ros, f"/{path}/kairo_inference/prediction") for path in PATHS}
            pids = {path: nodes[path].popen.pid for path in PATHS}  # type: ignore[attr-defined]
            for i in range(50):
                for loop in loops.values():
                    loop.ping(10_000 + i)
            print(f"manipulation model {model_id}: {v1} serving on both nodes, {v2} shadowed on one; "
                  f"{args.pings} round trips, flood {args.flood} msgs window {args.window}")
            rounds = [measure(loops, own, pids, reports, args, r) for r in range(args.rounds)]
        assert all(node.alive for node in nodes.values())  # type: ignore[attr-defined]
        if args.rounds > 1:
            columns = [np.array([r[k] for r in rounds]) for k in range(7)]
            print(f"median of {args.rounds} rounds, shadow / plain: p50 {np.median(columns[0]):.3f}x  p99 "
                  f"{np.median(columns[1]):.3f}x  rate {np.median(columns[2]):.3f}; active-path drops "
                  f"{int(columns[3].sum())}; inside the node {np.median(columns[4]):+.1f} us; CPU/msg "
                  f"{np.median(columns[5]):.2f}x; shadow skipped {int(columns[6].sum())}")
        return 0
    finally:
        GROUP.stop_all()


if __name__ == "__main__":
    sys.exit(main())
