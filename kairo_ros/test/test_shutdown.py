"""Ctrl-C and SIGTERM end every kairo_ros process quietly: exit code 0 and no traceback, once or twice.

A terminal sends SIGINT to the whole process group, and `ros2 launch`
sends its own on top, so a node may get two; a service manager sends
SIGTERM. Each node runs for real, with messages flowing through the
inference node when the signals come.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import sys
import time

import pytest
from inference_helpers import Collector
from onnx_models import features, linear_model
from std_msgs.msg import Float64MultiArray

from kairo_ros.testing.processes import ChildProcess, ProcessGroup

NOISE = ("Traceback", "KeyboardInterrupt", "RCLError", "ExternalShutdownException", "CancelledError")
SIGNALS = {"SIGINT": (signal.SIGINT,), "SIGINT twice": (signal.SIGINT, signal.SIGINT),
           "SIGTERM": (signal.SIGTERM,), "SIGTERM then SIGINT": (signal.SIGTERM, signal.SIGINT)}


def send(children: list[ChildProcess], signals: tuple[signal.Signals, ...]) -> None:
    """Each signal to every child's process group, as a terminal's Ctrl-C reaches every process in it."""
    for sig in signals:
        for child in children:
            os.killpg(child.popen.pid, sig)
        time.sleep(0.2)


def assert_quiet_exit(child: ChildProcess, timeout_s: float = 30) -> None:
    code = child.popen.wait(timeout=timeout_s)
    output = child.output()
    assert code == 0, f"{child.name} exited {code}:\n{child.tail()}"
    noise = [word for word in NOISE if word in output]
    assert not noise, f"{child.name} printed {noise}:\n{output[-3000:]}"


@pytest.mark.parametrize("signals", SIGNALS.values(), ids=SIGNALS.keys())
def test_every_node_ends_quietly(processes: ProcessGroup, ros, tmp_path: pathlib.Path,  # type: ignore[no-untyped-def]
                                 signals: tuple[signal.Signals, ...]) -> None:
    model = linear_model(features("manipulation"), tmp_path / "arm.onnx")
    commands = Collector(ros, Float64MultiArray, "/arm_controller/commands")
    children = [
        processes.start("kairo_sim_arm", ["kairo_sim_arm"]),
        processes.start("kairo_inference", ["kairo_inference", "--ros-args", "-p", f"model_path:={model}"]),
        processes.start("kairo_manager", ["kairo_manager"]),
    ]
    children[2].wait_for_output("kairo_manager ready", 60)
    # The arm publishes, the model answers, the arm moves: the data path is busy when the signals come.
    processes.wait_until(lambda: len(commands.snapshot()) >= 5, 60, "the model driving the arm", watch=children[1])
    send(children, signals)
    for child in children:
        assert_quiet_exit(child)


def test_the_demo_ends_quietly_and_stops_what_it_started(processes: ProcessGroup, tmp_path: pathlib.Path) -> None:
    demo = processes.start("kairo_demo", [sys.executable, "-m", "kairo_ros.demo.run", "--samples", "300",
                                          "--epochs", "1", "1", "--keep-data", "--output-dir", str(tmp_path)])
    demo.wait_for_output("[demo] train v1", 180)  # the backend and the three nodes are up
    send([demo], (signal.SIGINT, signal.SIGINT))
    assert_quiet_exit(demo, timeout_s=60)
    kept = re.search(r"logs and data kept in (\S+)", demo.output())
    assert kept, demo.output()
    data_dir = pathlib.Path(kept.group(1))
    try:
        logs = {path.name: path.read_text(errors="replace") for path in (data_dir / "logs").glob("*.log")}
        assert {"kairo_manager", "kairo_inference", "kairo_sim_arm"} <= {name.rsplit("-", 1)[0] for name in logs}
        for name, text in logs.items():
            assert not [word for word in NOISE if word in text], f"{name}:\n{text[-3000:]}"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
