"""A real Ray head (`ray start --head --block`) for the tests and benches.

It runs in its own temporary directory and process group, on a free
loopback port with 2 CPUs, the dashboard and usage stats off, and is killed
(the whole group: the head's processes and its workers) whatever happens.
The servers that use it need RAY_ENV in their environment too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# Loopback only, nothing sent home: Ray binds its servers to the node's address,
# which is the machine's network address unless clusters are switched off this way.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
START_S = 120.0


@contextlib.contextmanager
def running_ray_head(num_cpus: int = 2) -> Iterator[str]:
    """Start a throwaway Ray head; yield its address (127.0.0.1:PORT)."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="kray")  # short: Ray's unix sockets live under it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--num-cpus", str(num_cpus), "--num-gpus",
         "0", "--port", str(port), "--node-ip-address", "127.0.0.1", "--temp-dir", temp,
         "--include-dashboard", "false", "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **RAY_ENV}, start_new_session=True)
    try:
        assert proc.stdout is not None
        started, output = False, []
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ray runtime started" in line:
                started = True
                break
        if not started:
            raise RuntimeError("the Ray head did not start:\n" + "".join(output[-30:]))
        threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # a throwaway cluster: no graceful stop
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
        shutil.rmtree(temp, ignore_errors=True)
