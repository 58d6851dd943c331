"""POST /v1/models/train -> 202 latency p99 (goal <= 50 ms), vs GET /health.

Sequential requests from one client, each queued run cancelled right after
(the cancel is not timed) so the queue stays short, as in normal use.
"""

from __future__ import annotations

import time

import httpx
from backend_common import Backend, cli, pct

N = 200


def main() -> int:
    with Backend() as b:
        key = cli(b.data_dir, "keys", "create", "--workspace", "bench")
        ds = cli(b.data_dir, "datasets", "create-demo", "manipulation", "--workspace",
                 "bench", "--samples", "500")
        with httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as c:
            train, health = [], []
            for i in range(N + 10):
                t = time.perf_counter()
                r = c.post("/v1/models/train", json={
                    "dataset_id": ds, "robot_id": f"rob_t{i % 5}", "task": "manipulation",
                    "config": {"epochs": 1}})
                dt = (time.perf_counter() - t) * 1000
                assert r.status_code == 202, r.text
                t = time.perf_counter()
                c.get("/health")
                dh = (time.perf_counter() - t) * 1000
                if i >= 10:  # warm-up
                    train.append(dt)
                    health.append(dh)
                body = r.json()
                c.post(f"/v1/models/{body['model_id']}/runs/{body['run_id']}/cancel")
    p99 = pct(train, 99)
    print(f"{N} sequential POST /v1/models/train")
    print(f"POST train -> 202  p50 {pct(train, 50):6.2f} ms  p99 {p99:6.2f} ms (goal <= 50 ms)")
    print(f"GET /health        p50 {pct(health, 50):6.2f} ms  p99 {pct(health, 99):6.2f} ms")
    print(f"ratio p99 train/health {p99 / pct(health, 99):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
