"""/kairo/record keeping up: the simulated arm and its expert at 200 Hz, recorded, against a plain subscriber.

    python bench/record_rate.py [--rate-hz 200] [--seconds 10] [--rounds 3]

kairo_manager, kairo_sim_arm (--rate-hz) and the scripted expert run in
their own processes. Each round records the three arm topics for --seconds
while a plain rclpy subscriber in this process (reliable, keep all: the
baseline) receives the same joint states. The ratio is the joint states the
bag holds over those the baseline received, both counted by header stamp
within the bag's first and last stamp: goal 1.0 (nothing lost). It also
prints the manager's CPU time per recorded message, and the aligned samples.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from kairo_interfaces.action import RecordDataset
from kairo_ros.testing.commander import RunningGoal, send_goal
from kairo_ros.testing.graph import SpinningNode, wait_until
from kairo_ros.testing.processes import ProcessGroup, claim_domain_id, isolated_ros_env


def stamp_ns(msg: JointState) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def cpu_s(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-hz", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="kairo-bench-record-"))
    domain_id, claim = claim_domain_id()
    env = isolated_ros_env(domain_id)
    env["ROS_LOG_DIR"] = str(root / "roslog")
    group = ProcessGroup(log_dir=root / "logs", env={**os.environ, **env})
    ratios = []
    try:
        manager = group.start("kairo_manager", ["kairo_manager", "--ros-args", "-r", "__ns:=/kairo"])
        group.start("kairo_sim_arm", ["kairo_sim_arm", "--ros-args", "-p", f"rate_hz:={args.rate_hz}"])
        group.start("kairo_arm_expert", [sys.executable, "-m", "kairo_ros.demo.expert"])
        with SpinningNode("kairo_bench_record", domain_id=domain_id) as ros:
            seen: list[int] = []
            lock = threading.Lock()

            def on_joints(msg: JointState) -> None:
                with lock:
                    seen.append(stamp_ns(msg))

            ros.node.create_subscription(JointState, "/joint_states", on_joints,
                                         QoSProfile(history=HistoryPolicy.KEEP_ALL,
                                                    reliability=ReliabilityPolicy.RELIABLE))
            client = ros.action_client(RecordDataset, "/kairo/record")
            ros.wait_for_action_server(client, 60, "record")
            wait_until(lambda: bool(ros.node.get_publishers_info_by_topic("/arm_controller/commands")), 60,
                       "the expert")
            for round_index in range(-1, args.rounds):  # round -1 warms up discovery
                seconds = 2.0 if round_index < 0 else args.seconds
                goal = RecordDataset.Goal(task="manipulation", duration_s=seconds, output_dir=str(root / "bags"))
                cpu_before = cpu_s(manager.popen.pid)
                handle = send_goal(ros, client, goal, "record", timeout_s=30)
                result = RunningGoal[RecordDataset.Result](ros, handle, "record").result(seconds + 60).result
                cpu = cpu_s(manager.popen.pid) - cpu_before
                if not result.success:
                    raise RuntimeError(result.message)
                time.sleep(0.5)  # the baseline's last messages
                mcap_path = next(pathlib.Path(result.bag_path).glob("*.mcap"))
                with mcap_path.open("rb") as stream:
                    recorded = [stamp_ns(m) for _, ch, _, m in make_reader(
                        stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages(topics=["/joint_states"])]
                first, last = min(recorded), max(recorded)
                with lock:
                    baseline = {s for s in seen if first <= s <= last}
                ratio = len(set(recorded) & baseline) / max(len(baseline), 1)
                total = sum(result.message_counts)
                if round_index >= 0:
                    ratios.append(ratio)
                    dropped = dict(zip(result.dropped_reasons, result.dropped_counts, strict=True))
                    print(f"round {round_index + 1}: joint states recorded {len(recorded)} / baseline "
                          f"{len(baseline)} = {ratio:.4f}; {total} messages ({total / seconds:.0f}/s), "
                          f"{result.samples} samples (dropped {dropped}); "
                          f"manager CPU {cpu * 1e6 / max(total, 1):.0f} us/message")
            client.destroy()
    finally:
        group.stop_all()
        claim.close()
    median = statistics.median(ratios)
    print(f"recorded / baseline joint states at {args.rate_hz:g} Hz, median of {len(ratios)} rounds: "
          f"{median:.4f} (goal 1.0)")
    return 0 if median >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
