"""The test harness itself: children and their children always end."""

import os
import pathlib
import sys

import pytest

from kairo_ros.testing.graph import wait_until
from kairo_ros.testing.processes import ProcessGroup, claim_domain_id


def alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_stop_all_ends_children_and_grandchildren(tmp_path: pathlib.Path) -> None:
    group = ProcessGroup(log_dir=tmp_path)
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time, signal; signal.signal(signal.SIGINT, signal.SIG_IGN);"
              f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
              f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('ready', flush=True); time.sleep(60)")
    child = group.start("stubborn", [sys.executable, "-c", script])
    child.wait_for_output("ready", 10)
    grandchild = int(pid_file.read_text())
    assert alive(grandchild)
    group.stop_all(timeout_s=1.0)
    assert not child.alive
    # killed with the group; the kernel may take a moment to reap it on a loaded machine
    wait_until(lambda: not alive(grandchild), 10, f"grandchild {grandchild} gone")


def test_wait_until_reports_a_dead_child(tmp_path: pathlib.Path) -> None:
    group = ProcessGroup(log_dir=tmp_path)
    child = group.start("crasher", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="crasher exited"):
        group.wait_until(lambda: False, 10, "something", watch=child)
    assert "boom" in child.output()


def test_domain_claims_are_exclusive() -> None:
    first, first_lock = claim_domain_id()
    second, second_lock = claim_domain_id()
    try:
        assert first != second
        assert os.environ["ROS_DOMAIN_ID"] not in (str(first), str(second))
    finally:
        first_lock.close()
        second_lock.close()
