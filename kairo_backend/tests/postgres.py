"""A real PostgreSQL server (Debian's) in a temporary directory, for the tests and benches.

initdb refuses to run as root, so as root the cluster belongs to the `postgres`
user (`runuser`); it listens on a free loopback port and on a unix socket in its
own directory, and is stopped (immediate mode) whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path(os.environ.get("KAIRO_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_S = 60.0
MISSING = (f"PostgreSQL 15's server binaries are missing ({PG_BIN}/initdb): run "
           "'apt-get install postgresql-15' (scripts/setup.sh does it as root), or set "
           "KAIRO_PG_BIN to a directory holding initdb, pg_ctl and postgres")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def running_postgres(max_connections: int = 400) -> Iterator[str]:
    """Start a throwaway cluster; yield its URL (database `kairo`, user `kairo`)."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(MISSING)
    root = Path(tempfile.mkdtemp(prefix="kairo-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run(_as_owner([str(PG_BIN / "initdb"), "-D", str(data), "-U", "kairo",
                                  "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"]),
                       check=True, capture_output=True, timeout=120)
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
                   f"-c unix_socket_directories={sockets} -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off "
                   f"-c max_connections={max_connections} -c shared_buffers=32MB")
        subprocess.run(_as_owner([*pg_ctl, "-o", options, "-l", str(root / "log"), "-w",
                                  "-t", str(int(START_S)), "start"]),
                       check=True, capture_output=True, timeout=START_S + 10)
        started = True
        deadline = time.monotonic() + START_S
        while True:
            made = subprocess.run(
                [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "kairo",
                 "-d", "postgres", "-c", "CREATE DATABASE kairo"], capture_output=True,
                text=True, timeout=60)
            if made.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not take connections: {made.stderr}")
            time.sleep(0.2)
        yield f"postgresql://kairo@127.0.0.1:{port}/kairo"
    except subprocess.CalledProcessError as exc:
        log = (root / "log").read_text(errors="replace")[-2000:] if (root / "log").exists() \
            else ""
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r} {log}") from exc
    finally:
        if started:
            subprocess.run(_as_owner([*pg_ctl, "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
