"""A real kairo-backend for the tests and the benchmarks: `kairo-backend serve` on a free loopback port."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from dataclasses import dataclass

import httpx

from kairo_ros.testing.processes import ChildProcess, ProcessGroup, free_port


def backend_cli(data_dir: pathlib.Path, *args: str) -> str:
    """Run a `kairo-backend` subcommand on `data_dir`; its last stdout line."""
    out = subprocess.run([sys.executable, "-m", "kairo_backend", *args, "--data-dir", str(data_dir)],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return out.strip().splitlines()[-1]


def start_backend(group: ProcessGroup, data_dir: pathlib.Path, port: int | None = None,
                  timeout_s: float = 60) -> ChildProcess:
    """`kairo-backend serve` in `group`, once /health answers; its `url` attribute is where."""
    port = port or free_port()
    child = group.start("kairo-backend", [sys.executable, "-m", "kairo_backend", "serve",
                                          "--host", "127.0.0.1", "--port", str(port),
                                          "--data-dir", str(data_dir)])
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    group.wait_until(healthy, timeout_s, f"backend health at {url}", watch=child)
    child.url = url  # type: ignore[attr-defined]
    return child


@dataclass
class Backend:
    """A started backend, its data dir and an API key of its own."""

    url: str
    key: str
    data_dir: pathlib.Path
    process: ChildProcess

    @classmethod
    def start(cls, group: ProcessGroup, data_dir: pathlib.Path, workspace: str = "test") -> Backend:
        child = start_backend(group, data_dir)
        backend = cls(child.url, "", data_dir, child)  # type: ignore[attr-defined]
        backend.key = backend.cli("keys", "create", "--workspace", workspace)
        return backend

    def client(self, key: str | None = None, timeout_s: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s,
                            headers={"Authorization": f"Bearer {key or self.key}"})

    def cli(self, *args: str) -> str:
        return backend_cli(self.data_dir, *args)
