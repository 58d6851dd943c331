"""Child processes that always end, and per-run DDS isolation.

Tests, the demo and the benchmarks start real nodes and a real backend as
child processes. `ProcessGroup` owns them: each child runs in its own
process group (so its own children end with it), dies with its parent
(PR_SET_PDEATHSIG), and is stopped by `stop_all()` with SIGINT, then
SIGTERM, then SIGKILL, each with a deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

# Fast DDS derives its ports from the domain id; 0..101 is the safe range.
_DOMAIN_RANGE = range(1, 101)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: end this process when its parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def claim_domain_id() -> tuple[int, IO[str]]:
    """Claim a ROS_DOMAIN_ID no other run on this machine holds.

    Returns the id and the open lock file; the claim lasts while the file
    stays open (close it, or let the process end, to release it).
    """
    lock_dir = pathlib.Path(tempfile.gettempdir(), "kairo-ros-domains")
    lock_dir.mkdir(exist_ok=True)
    start = os.getpid() % len(_DOMAIN_RANGE)
    for offset in range(len(_DOMAIN_RANGE)):
        domain = _DOMAIN_RANGE[(start + offset) % len(_DOMAIN_RANGE)]
        handle = open(lock_dir / f"{domain}.lock", "w")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return domain, handle
    raise RuntimeError(f"every ROS_DOMAIN_ID in {lock_dir} is taken; remove stale runs")


def isolated_ros_env(domain_id: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment whose DDS traffic stays on this host, in `domain_id`."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the range above
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ChildProcess:
    """One started child: its Popen and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: pathlib.Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, needle: str, timeout_s: float) -> str:
        """Wait until `needle` appears in the output; return the matching line."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.output().splitlines():
                if needle in line:
                    return line
            if not self.alive:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}) before printing "
                                   f"{needle!r}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not print {needle!r} within {timeout_s:.0f} s:\n"
                                   f"{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGINT, then SIGTERM, then SIGKILL to the child's process group."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not self.alive:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout_s)
        # Grandchildren that outlived the leader still share its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


@dataclass
class ProcessGroup:
    """Starts children and guarantees that `stop_all()` ends every one."""

    log_dir: pathlib.Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: list[ChildProcess] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: str | os.PathLike[str] | None = None) -> ChildProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{len(self.children)}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})}, cwd=cwd,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        child = ChildProcess(name, popen, log_path)
        self.children.append(child)
        return child

    def stop_all(self, timeout_s: float = 5.0) -> None:
        for child in reversed(self.children):
            child.stop(timeout_s)

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float, what: str,
                   watch: ChildProcess | None = None, period_s: float = 0.05) -> None:
        """Poll `predicate` until true; fail early when `watch` exits."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if watch is not None and not watch.alive:
                raise RuntimeError(f"{watch.name} exited ({watch.popen.returncode}) while waiting "
                                   f"for {what}:\n{watch.tail()}")
            if time.monotonic() > deadline:
                tail = f":\n{watch.tail()}" if watch is not None else ""
                raise TimeoutError(f"{what} not reached within {timeout_s:.0f} s{tail}")
            time.sleep(period_s)
