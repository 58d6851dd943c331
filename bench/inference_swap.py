"""Hot swap under a 200 Hz stream: messages dropped, and promotion -> first prediction of the new version.

    python bench/inference_swap.py [--rounds 3]

A real backend trains two versions of a manipulation model; kairo_inference
serves the first (model_id, reliable input QoS, events only: poll_period_s 0).
While a 200 Hz JointState stream runs, the second version is promoted through
the API and announced on /kairo/model_events as kairo_manager does. Goals:
0 dropped, <= 1 s from the promote call to the first prediction naming the
new version. Each round promotes the other version back, so every round is a swap.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
from geometry_msgs.msg import PointStamped
from inference_common import GROUP, BenchBackend, start
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from kairo_interfaces.msg import ModelEvent, Prediction
from kairo_ros.testing.graph import SpinningNode, wait_until

QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
EVENTS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RATE_HZ = 200.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        backend = BenchBackend()
        dataset = backend.cli("datasets", "create-demo", "manipulation", "--workspace", "bench", "--samples", "500")
        model_id, first = backend.train("manipulation", dataset)
        _, second = backend.train("manipulation", dataset, promote=False)
        inference = start("kairo_inference", [
            "kairo_inference", "--ros-args", "-p", f"model_id:={model_id}", "-p", f"api_url:={backend.url}",
            "-p", f"cache_dir:={backend.data_dir.parent / 'cache'}", "-p", "poll_period_s:=0",
            "-p", "input_qos:=reliable", "--log-level", "warn"], env={"KAIRO_API_KEY": backend.key})
        answers: list[tuple[float, int, str]] = []
        lock = threading.Lock()

        def on_prediction(msg: Prediction) -> None:
            with lock:
                answers.append((time.monotonic(), msg.header.stamp.sec, msg.model_version))

        with SpinningNode("kairo_bench_swap") as ros:
            ros.node.create_subscription(Prediction, "/kairo/kairo_inference/prediction", on_prediction, QOS)
            joints = ros.node.create_publisher(JointState, "/joint_states", QOS)
            target = ros.node.create_publisher(PointStamped, "/target_point", QOS)
            events = ros.node.create_publisher(ModelEvent, "/kairo/model_events", EVENTS_QOS)
            for pub in (joints, target, events):
                wait_until(lambda p=pub: p.get_subscription_count() > 0, 30, f"kairo_inference on {pub.topic_name}")
            target.publish(PointStamped())
            wait_until(lambda: (joints.publish(JointState(position=[0.0] * 3)), bool(answers))[1], 30,
                       "a first prediction", period_s=0.05)
            index, versions = 1, [second, first]
            for round_number in range(args.rounds):
                new = versions[round_number % 2]
                with lock:
                    answers.clear()
                sent_from = index
                next_send = time.monotonic()
                promoted_at = 0.0
                while index - sent_from < int(RATE_HZ * 3):  # 3 s of stream; the swap at 1 s
                    msg = JointState(position=np.random.default_rng(index).uniform(-1, 1, 3).tolist())
                    msg.header.stamp.sec = index
                    joints.publish(msg)
                    index += 1
                    if index - sent_from == int(RATE_HZ):
                        promoted_at = time.monotonic()
                        backend.promote(model_id, new)
                        events.publish(ModelEvent(event=ModelEvent.PROMOTED, model_id=model_id, version=new,
                                                  robot_id="rob_bench1", task="manipulation"))
                    next_send += 1.0 / RATE_HZ
                    time.sleep(max(0.0, next_send - time.monotonic()))
                sent = set(range(sent_from, index))
                wait_until(lambda s=sent: {a[1] for a in answers} >= s, 10, "every answer", period_s=0.05)
                with lock:
                    got = [a for a in answers if a[1] in sent]
                first_new = min(t for t, _s, v in got if v == new)
                print(f"round {round_number + 1}: {len(sent)} sent at {RATE_HZ:.0f} Hz, {len(got)} answered, "
                      f"dropped {len(sent) - len({a[1] for a in got})}; promote call -> first prediction of "
                      f"{new}: {(first_new - promoted_at) * 1000:.0f} ms (goal <= 1000 ms, ratio "
                      f"{(first_new - promoted_at):.2f} of the goal)")
        assert inference.alive
        return 0
    finally:
        GROUP.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
