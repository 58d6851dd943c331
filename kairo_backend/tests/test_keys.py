"""API keys can be listed and revoked with the real CLI; a running server refuses
a revoked key within a second, and keeps accepting the others."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import Server, cli, database_args


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kairo_backend", *args, "--data-dir",
                           str(data_dir), *database_args(data_dir)], capture_output=True,
                          text=True, timeout=120, cwd=data_dir)


def test_list_and_revoke_on_a_running_server(server: Server, key: str) -> None:
    doomed = cli(server.data_dir, "keys", "create", "--workspace", "revokers")
    kept = cli(server.data_dir, "keys", "create", "--workspace", "revokers")
    listing = run_cli(server.data_dir, "keys", "list", "--workspace", "revokers")
    assert listing.returncode == 0, listing.stderr
    assert doomed not in listing.stdout and kept not in listing.stdout  # never the secret
    rows = [ln.split() for ln in listing.stdout.splitlines()[1:]]
    assert len(rows) == 2 and all(r[2] == "revokers" and r[4] == "-" for r in rows), rows
    doomed_row = next(r for r in rows if doomed.startswith(r[1].rstrip("…")))
    assert doomed_row[0].startswith("key_")

    with server.client(doomed) as c_doomed, server.client(kept) as c_kept:
        assert c_doomed.get("/v1/models").status_code == 200  # cached by the server now
        revoked = run_cli(server.data_dir, "keys", "revoke", doomed_row[0])
        assert revoked.returncode == 0, revoked.stderr
        t_revoked = time.monotonic()
        status = 200
        # the server trusts a looked-up key for 0.5 s; 5 s leaves room for a loaded machine
        while status == 200 and time.monotonic() - t_revoked < 5.0:
            status = c_doomed.get("/v1/models").status_code
        refused_after = time.monotonic() - t_revoked
        assert status == 401, f"still {status} {refused_after:.2f} s after the revocation"
        print(f"revoked key refused {refused_after * 1000:.0f} ms after the CLI returned")
        body = c_doomed.get("/v1/models").json()
        assert body["error"]["code"] == "unauthorized"
        assert c_kept.get("/v1/models").status_code == 200

    listing = run_cli(server.data_dir, "keys", "list").stdout
    line = next(ln for ln in listing.splitlines() if ln.startswith(doomed_row[0]))
    assert line.split()[4] != "-"  # the revocation time
    assert key not in listing


def test_revoke_by_prefix_and_refusals(server: Server) -> None:
    victim = cli(server.data_dir, "keys", "create", "--workspace", "prefixes")
    prefix = victim[:len("kai_live_") + 4]
    ambiguous = run_cli(server.data_dir, "keys", "revoke", "kai_live_")
    assert ambiguous.returncode == 2 and "error" in ambiguous.stderr
    missing = run_cli(server.data_dir, "keys", "revoke", "key_doesnotexist")
    assert missing.returncode == 2 and "keys list" in missing.stderr
    assert "Traceback" not in missing.stderr
    done = run_cli(server.data_dir, "keys", "revoke", prefix)
    assert done.returncode == 0, done.stderr
    assert victim not in done.stdout and "revoked key_" in done.stdout
    deadline = time.monotonic() + 5
    with server.client(victim) as c:
        status = c.get("/v1/models").status_code
        while status != 401 and time.monotonic() < deadline:
            time.sleep(0.05)
            status = c.get("/v1/models").status_code
    assert status == 401
    again = run_cli(server.data_dir, "keys", "revoke", prefix)
    assert again.returncode == 0  # revoking twice is harmless and says so
