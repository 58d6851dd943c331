"""Importing a rosbag2 recording as a dataset vs. a plain library read of it.

A recording of >= 100,000 messages (MCAP storage; joint states, targets, commands)
is written by rosbags' Writer. In each round, in one process:
- baseline: rosbags' AnyReader opens it, iterates every message and deserializes it
  (the least any import must do);
- ours: `kairo_backend.training.recordings.import_dataset`, what POST /v1/datasets
  and `kairo-backend datasets import` run: read, deserialize, read fields, align,
  write the .npz, store the row.
After a warm-up, the ratio ours/baseline is printed per round (the median of three
interleaved pairs; issue 12: <= 2x), by the process's CPU time (other processes' load
on a shared machine stretches wall time at random; the wall times are printed too). Then the import's
peak memory (VmHWM of a fresh process doing only the import, over the same process's
RSS before it) on this recording and on one a quarter its size: flat, not growing
with the recording.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROUNDS = 3
PAIRS = 3
MESSAGES = 100_002  # three topics
FEATURES = {
    "task": "manipulation", "tolerance": 0.05,
    "inputs": [
        {"name": "joint_positions", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
         "fields": ["position"], "shape": [3]},
        {"name": "target", "topic": "/target_point", "type": "geometry_msgs/msg/PointStamped",
         "fields": ["point.x", "point.y"], "shape": [2]},
    ],
    "outputs": [
        {"name": "joint_commands", "topic": "/arm_controller/commands",
         "type": "std_msgs/msg/Float64MultiArray", "fields": ["data"], "shape": [3]},
    ],
}


def write_recording(path: Path, messages: int) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    t = ts.types
    base = 1_760_000_000_000_000_000
    layout = t["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    rng = np.random.default_rng(0)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        joints = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        targets = w.add_connection("/target_point", "geometry_msgs/msg/PointStamped",
                                   typestore=ts)
        commands = w.add_connection("/arm_controller/commands",
                                    "std_msgs/msg/Float64MultiArray", typestore=ts)
        for i in range(messages // 3):
            stamp = base + i * 20_000_000
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
                sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="base")
            x, y = rng.uniform(-1, 1, 2)
            w.write(targets, stamp - 1_000_000, ts.serialize_cdr(t["geometry_msgs/msg/PointStamped"](
                header=header, point=t["geometry_msgs/msg/Point"](x=x, y=y, z=0.0)),
                "geometry_msgs/msg/PointStamped"))
            w.write(joints, stamp, ts.serialize_cdr(t["sensor_msgs/msg/JointState"](
                header=header, name=["j0", "j1", "j2"], position=rng.uniform(-1, 1, 3),
                velocity=np.zeros(3), effort=np.zeros(0)), "sensor_msgs/msg/JointState"))
            w.write(commands, stamp + 5_000_000, ts.serialize_cdr(
                t["std_msgs/msg/Float64MultiArray"](layout=layout, data=rng.uniform(-1, 1, 3)),
                "std_msgs/msg/Float64MultiArray"))


def plain_read(path: Path) -> int:
    from rosbags.highlevel import AnyReader

    count = 0
    with AnyReader([path]) as reader:
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)
            count += 1
    return count


def ours(path: Path, data_dir: Path) -> dict[str, object]:
    from kairo_backend.core.config import Settings
    from kairo_backend.store import Store
    from kairo_backend.training.datasets import check_features
    from kairo_backend.training.recordings import import_dataset

    settings = Settings(data_dir=data_dir)
    settings.ensure_dirs()
    store = Store(settings.db_path)
    ws = store.ensure_workspace("bench")
    return import_dataset(settings, store, ws, "bench", path, check_features(FEATURES),
                          file_name=path.name)


def vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(path: Path) -> None:
    """Import alone in this process; print the memory it took."""
    import rosbags.highlevel  # noqa: F401 - libraries loaded before the baseline RSS

    import kairo_backend.training.recordings  # noqa: F401
    import kairo_features.alignment  # noqa: F401

    before = vm("VmRSS")
    with tempfile.TemporaryDirectory(prefix="kairo-bench-import-") as tmp:
        ds = ours(path, Path(tmp))
    print(json.dumps({"rss_before_mb": before, "peak_mb": vm("VmHWM"), "samples": ds["samples"]}))


def peak(path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kairo-bench-bags-") as tmp:
        root = Path(tmp)
        bag, small = root / "big", root / "small"
        t0 = time.perf_counter()
        write_recording(bag, MESSAGES)
        write_recording(small, MESSAGES // 4)
        print(f"recordings written in {time.perf_counter() - t0:.1f} s: {MESSAGES} and "
              f"{MESSAGES // 4} messages")
        # warm-up: every module imported and every cache filled before anything is timed
        with tempfile.TemporaryDirectory(prefix="kairo-bench-data-", dir=root) as data:
            plain_read(small)
            ours(small, Path(data))
        ratios = []
        for r in range(ROUNDS):
            # a round: the median of PAIRS interleaved pairs, so that the other processes'
            # load on this shared machine hits both sides alike
            pairs = []
            for _ in range(PAIRS):
                w0, c0 = time.perf_counter(), time.process_time()
                count = plain_read(bag)
                base = (time.perf_counter() - w0, time.process_time() - c0)
                with tempfile.TemporaryDirectory(prefix="kairo-bench-data-", dir=root) as data:
                    w0, c0 = time.perf_counter(), time.process_time()
                    ds = ours(bag, Path(data))
                    mine = (time.perf_counter() - w0, time.process_time() - c0)
                pairs.append((mine[1] / base[1], mine[0] / base[0], base, mine))
            ratio, wall_ratio, base, mine = sorted(pairs)[PAIRS // 2]
            ratios.append(ratio)
            print(f"round {r + 1}: plain read {count} messages {base[1]:.2f} s CPU "
                  f"({base[0]:.2f} s wall), import {ds['samples']} samples {mine[1]:.2f} s CPU "
                  f"({mine[0]:.2f} s wall): ratio {ratio:.2f}x CPU, {wall_ratio:.2f}x wall "
                  f"(median of {PAIRS} pairs by CPU: {', '.join(f'{p[0]:.2f}' for p in pairs)})")
        median = sorted(ratios)[len(ratios) // 2]
        print(f"ratio import/plain read: median {median:.2f}x "
              f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}; target <= 2x)")
        for path, n in ((bag, MESSAGES), (small, MESSAGES // 4)):
            m = peak(path)
            print(f"peak memory importing {n} messages ({m['samples']} samples): "
                  f"{m['peak_mb'] - m['rss_before_mb']:.1f} MB over the process's "
                  f"{m['rss_before_mb']:.1f} MB (VmHWM {m['peak_mb']:.1f} MB)")
        if median > 2.0:
            raise SystemExit(f"import slower than 2x a plain read (median round {median:.2f}x)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
    else:
        main()
