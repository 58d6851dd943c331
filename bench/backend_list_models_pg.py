"""GET /v1/models p99 under 50 concurrent clients: the store on PostgreSQL vs on SQLite.

Two servers in one run, the same workspace in each (6 models, 2 complete versions
each); phases alternate (SQLite, PostgreSQL, SQLite, PostgreSQL) so drift hits both
alike. PostgreSQL is Debian's, started in a temporary directory on this machine
(kairo_backend/tests/postgres.py). Goal: ratio <= 2x.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
from backend_common import Backend, cli, pct
from backend_list_models import CLIENTS, phase

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kairo_backend" / "tests"))
from postgres import running_postgres  # noqa: E402


def populate(b: Backend, database: list[str]) -> dict[str, str]:
    """The workspace's 6 models, each with 2 complete versions; the request headers."""
    key = cli(b.data_dir, "keys", "create", "--workspace", "bench", *database)
    ds = cli(b.data_dir, "datasets", "create-demo", "navigation", "--workspace", "bench",
             "--samples", "200", *database)
    h = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=b.url, headers=h, timeout=30) as c:
        runs = [c.post("/v1/models/train", json={
            "dataset_id": ds, "robot_id": f"rob_bench{i}", "task": "navigation",
            "config": {"epochs": 1}}).json() for i in range(6) for _ in range(2)]
        for r in runs:
            while c.get(f"/v1/models/{r['model_id']}/runs/{r['run_id']}"
                        ).json()["status"] in ("queued", "running"):
                time.sleep(0.3)
        assert c.get("/v1/models").json()["total"] == 6
    return h


def main() -> int:
    with running_postgres() as url:
        pg_args = ["--database-url", url]
        with Backend() as lite, Backend(*pg_args) as pg:
            servers = {"SQLite": (lite, populate(lite, [])),
                       "PostgreSQL": (pg, populate(pg, pg_args))}
            lat: dict[str, list[float]] = {name: [] for name in servers}
            for b, h in servers.values():  # warm-up: connections, caches
                asyncio.run(phase(b.url, "/v1/models", h))
            for _ in range(2):
                for name, (b, h) in servers.items():
                    lat[name] += asyncio.run(phase(b.url, "/v1/models", h))
    lp, pp = pct(lat["SQLite"], 99), pct(lat["PostgreSQL"], 99)
    print(f"{CLIENTS} concurrent clients, {len(lat['SQLite'])} requests per engine")
    for name, samples in lat.items():
        print(f"GET /v1/models on {name:<10} p50 {pct(samples, 50):7.2f} ms  "
              f"p99 {pct(samples, 99):7.2f} ms")
    print(f"ratio p99 PostgreSQL / SQLite {pp / lp:.2f}x (goal <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
