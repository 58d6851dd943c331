"""Shared helpers for the backend benchmarks: a real server on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def cli(data_dir: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "kairo_backend", *args, "--data-dir",
                          str(data_dir)], check=True, capture_output=True, text=True,
                         cwd=data_dir)
    return out.stdout.strip().splitlines()[-1]


class Backend:
    def __init__(self, *extra: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="kairo-bench-")
        self.data_dir = Path(self.tmp.name)
        self.extra = list(extra)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Backend:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kairo_backend", "serve", "--port", "0", "--data-dir",
             str(self.data_dir), *self.extra], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=self.data_dir)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout or []],
                         daemon=True).start()
        for _ in range(300):
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("backend did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.tmp.cleanup()


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))
