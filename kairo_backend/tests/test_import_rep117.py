"""A rosbag2 navigation recording whose scans hold REP 117's +Inf, -Inf and NaN imports by the convention.

Written with rosbags' Writer (an independent writer), imported by the backend's
importer; the scans in the dataset must be those of the recording with the
conventions applied (docs/features.md, "Range sensors"), none dropped.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from kairo_backend.training.datasets import load_arrays
from kairo_backend.training.recordings import import_recording, open_recording
from kairo_features.tasks import NAV_BEAMS, default_features

TYPES = get_typestore(Stores.ROS2_JAZZY)
SCAN, TWIST = "sensor_msgs/msg/LaserScan", "geometry_msgs/msg/Twist"
BASE_NS, PERIOD_NS, SCANS = 1_760_000_000_000_000_000, 100_000_000, 12  # the importer wants >= 10
RANGE_MIN, RANGE_MAX = 0.12, 8.0
INF, NAN = float("inf"), float("nan")


def _cdr(msg: Any) -> bytes:
    return bytes(TYPES.serialize_cdr(msg, msg.__msgtype__))


def _scans() -> tuple[np.ndarray, np.ndarray]:
    """(as recorded, as the convention reads them) [SCANS, NAV_BEAMS]."""
    recorded = np.tile(np.linspace(0.5, 5.0, NAV_BEAMS, dtype=np.float32), (SCANS, 1))
    expected = recorded.copy()
    recorded[1, [0, 10, 63]] = INF           # no return
    expected[1, [0, 10, 63]] = RANGE_MAX
    recorded[2, [5, 6]] = -INF               # too close
    expected[2, [5, 6]] = RANGE_MIN
    recorded[3, 20] = NAN                    # invalid: the nearer neighbour (beam 19)
    expected[3, 20] = expected[3, 19]
    recorded[4, [0, 1]] = NAN                # at the start: the one neighbour there is
    expected[4, [0, 1]] = expected[4, 2]
    recorded[5, [30, 31]] = [INF, NAN]       # after the Inf substitution: min(range_max, beam 32)
    expected[5, [30, 31]] = [RANGE_MAX, expected[5, 32]]
    return recorded, expected


def _write_bag(path: Path, recorded: np.ndarray) -> np.ndarray:
    types = TYPES.types
    commands = np.stack([np.arange(SCANS) * 0.1, -np.arange(SCANS) * 0.05], axis=1).astype(np.float32)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        scan_conn = writer.add_connection("/scan", SCAN, typestore=TYPES)
        twist_conn = writer.add_connection("/cmd_vel", TWIST, typestore=TYPES)
        for i, ranges in enumerate(recorded):
            t = BASE_NS + i * PERIOD_NS
            stamp = types["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id="laser")
            writer.write(scan_conn, t, _cdr(types[SCAN](
                header=header, angle_min=-np.pi, angle_max=np.pi, angle_increment=2 * np.pi / NAV_BEAMS,
                time_increment=0.0, scan_time=0.1, range_min=RANGE_MIN, range_max=RANGE_MAX,
                ranges=ranges, intensities=np.zeros(0, np.float32))))
            vector = types["geometry_msgs/msg/Vector3"]
            writer.write(twist_conn, t + 5_000_000, _cdr(types[TWIST](
                linear=vector(x=float(commands[i, 0]), y=0.0, z=0.0),
                angular=vector(x=0.0, y=0.0, z=float(commands[i, 1])))))
    return commands


def test_scans_with_non_finite_ranges_import_by_rep117(tmp_path: Path) -> None:
    recorded, expected = _scans()
    commands = _write_bag(tmp_path / "nav_bag", recorded)
    target = tmp_path / "dataset.npz"
    with ExitStack() as stack:
        recording = open_recording(stack, tmp_path / "nav_bag", tmp_path, file_name="nav_bag",
                                   max_extract_bytes=10**8)
        result = import_recording(recording, default_features("navigation"), tmp_path, target,
                                  max_samples=1000, max_bytes=10**8)
    assert result.samples == SCANS and not result.dropped
    arrays = load_arrays(target.read_bytes())
    np.testing.assert_array_equal(arrays["scan"], expected)
    np.testing.assert_array_equal(arrays["cmd_vel"], commands)
    assert np.isfinite(arrays["scan"]).all()
