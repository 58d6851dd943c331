"""kairo_features' field readers against hand-written attribute reads, on real rclpy messages.

    python bench/features_read.py [--reads 1000] [--rounds 150]

The inference node reads every input message with kairo_features
(`FieldsReader`, `image_to_array`). The baseline is what one would write by
hand for that one message type: attribute access and one numpy conversion
(for a LaserScan also REP 117: +Inf and -Inf become range_max and range_min).
Both run interleaved in the same process, round after round; each gets
its best round (the machine is shared: the best is the least disturbed),
and the summary gives their ratio per message (goal: <= 1.5, the price of a
generic reader that also checks what it reads).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import Image, JointState, LaserScan

from kairo_features.fields import FieldsReader, ImageReader

GOAL = 1.5


def _image() -> Image:
    msg = Image(height=32, width=32, encoding="rgb8", step=96)
    msg.data = bytes(range(256)) * 12
    return msg


def _hand_image(msg: Image) -> np.ndarray:
    pixels = np.frombuffer(msg.data, dtype=np.uint8).reshape(32, 32, 3)
    return pixels.transpose(2, 0, 1) * np.float32(1 / 255)  # RGB in [0, 1], as models take images


INF = float("inf")


def _hand_ranges(msg: LaserScan) -> np.ndarray:
    """A scan's ranges by hand, with REP 117's no return / too close (+Inf / -Inf) as the bounds."""
    ranges = np.asarray(msg.ranges, dtype=np.float32)
    if np.isfinite(ranges).all():
        return ranges
    return np.nan_to_num(ranges, posinf=msg.range_max, neginf=msg.range_min)


CASES: list[tuple[str, Any, Callable[[Any], np.ndarray], Callable[[Any], np.ndarray]]] = [
    ("JointState position [3]", JointState(position=[0.1, 0.2, 0.3]),
     FieldsReader(["position"], 3).read,
     lambda m: np.asarray(m.position, dtype=np.float32)),
    ("PointStamped point.x, point.y", PointStamped(),
     FieldsReader(["point.x", "point.y"], 2).read,
     lambda m: np.asarray([m.point.x, m.point.y], dtype=np.float32)),
    ("LaserScan ranges [64]", LaserScan(ranges=[1.0] * 64, range_min=0.1, range_max=10.0),
     FieldsReader(["ranges"], 64).read, _hand_ranges),
    ("LaserScan ranges [64], +-Inf", LaserScan(ranges=[1.0] * 62 + [INF, -INF], range_min=0.1, range_max=10.0),
     FieldsReader(["ranges"], 64).read, _hand_ranges),
    ("Image rgb8 32x32", _image(), ImageReader((3, 32, 32)).read, _hand_image),
]


def per_read(fn: Callable[[Any], np.ndarray], msg: Any, reads: int) -> float:
    start = time.perf_counter()
    for _ in range(reads):
        fn(msg)
    return (time.perf_counter() - start) / reads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=150)
    args = parser.parse_args()
    worst = 0.0
    for label, msg, reader, hand in CASES:
        if not np.array_equal(reader(msg).reshape(-1), hand(msg).reshape(-1)):
            print(f"{label}: the two readers disagree", file=sys.stderr)
            return 1
        ours, theirs = [], []
        for _ in range(args.rounds):  # interleaved, so both see the same machine load
            theirs.append(per_read(hand, msg, args.reads))
            ours.append(per_read(reader, msg, args.reads))
        ratio = min(ours) / min(theirs)
        worst = max(worst, ratio)
        print(f"{label:32s} kairo_features {min(ours) * 1e9:7.0f} ns  "
              f"by hand {min(theirs) * 1e9:7.0f} ns  ratio {ratio:.2f}")
    print(f"worst ratio {worst:.2f} (goal <= {GOAL})")
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
