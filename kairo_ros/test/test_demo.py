"""`kairo_demo` (make demo) end to end, and its cleanup on success and on Ctrl-C."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
import uuid

MARK = "KAIRO_DEMO_TEST_MARK"


def marked_processes(mark: str) -> list[int]:
    """PIDs of live processes whose environment carries `mark` (the demo's children inherit it)."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, PermissionError, ProcessLookupError, IndexError):
            continue
        if f"{MARK}={mark}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(proc.name))
    return found


def start_demo(tmp_path: pathlib.Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    mark = uuid.uuid4().hex
    env = {**os.environ, MARK: mark}
    proc = subprocess.Popen(["kairo_demo", "--output-dir", str(tmp_path), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, mark


def test_demo_runs_the_whole_loop_and_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    proc, mark = start_demo(tmp_path, "--samples", "1500", "--epochs", "2", "4", "--serve-seconds", "2")
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert "serving v1:" in output and "serving v2:" in output
    summary = output[output.index("[demo] summary"):]
    assert "v1 -> v2" in summary
    swap_line = next(line for line in summary.splitlines() if "dropped in hot swap" in line)
    assert swap_line.split()[-1] == "0", swap_line
    png = tmp_path / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in summary
    assert marked_processes(mark) == []


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: pathlib.Path) -> None:
    proc, mark = start_demo(tmp_path, "--samples", "1500", "--epochs", "200", "200")
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "[demo] train v1" in line:
                break
        time.sleep(1.0)  # training is under way: backend, manager, inference and arm all running
        assert len(marked_processes(mark)) >= 5, "".join(lines)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, "".join(lines) + output  # stopping on request is a normal end
    assert "interrupted" in output
    deadline = time.monotonic() + 10
    while marked_processes(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marked_processes(mark) == []
