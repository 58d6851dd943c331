"""GET /v1/models p99 under 50 concurrent clients vs GET /health of the same server.

Goal: ratio <= 2x. The workspace holds 6 models with 2 complete versions each.
Phases alternate (health, models, health, models) so drift hits both alike.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from backend_common import Backend, cli, pct

CLIENTS = 50
PER_CLIENT = 30


async def phase(url: str, path: str, headers: dict[str, str]) -> list[float]:
    """CLIENTS keep-alive connections, each sending PER_CLIENT requests in turn.

    A minimal HTTP/1.1 client on asyncio streams: a heavyweight client on the
    same 2 cores would measure itself rather than the server.
    """
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
    lat: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(PER_CLIENT):
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                              if ln.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            lat.append((time.perf_counter() - t) * 1000)
        writer.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return lat


def main() -> int:
    with Backend() as b:
        key = cli(b.data_dir, "keys", "create", "--workspace", "bench")
        ds = cli(b.data_dir, "datasets", "create-demo", "navigation", "--workspace", "bench",
                 "--samples", "200")
        h = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=b.url, headers=h, timeout=30) as c:
            runs = []
            for i in range(6):
                for _ in range(2):
                    r = c.post("/v1/models/train", json={
                        "dataset_id": ds, "robot_id": f"rob_bench{i}", "task": "navigation",
                        "config": {"epochs": 1}}).json()
                    runs.append(r)
            for r in runs:
                while c.get(f"/v1/models/{r['model_id']}/runs/{r['run_id']}"
                            ).json()["status"] in ("queued", "running"):
                    time.sleep(0.3)
            body = c.get("/v1/models").json()
            assert body["total"] == 6
        health: list[float] = []
        models: list[float] = []
        asyncio.run(phase(b.url, "/health", h))  # warm-up
        asyncio.run(phase(b.url, "/v1/models", h))
        for _ in range(2):
            health += asyncio.run(phase(b.url, "/health", h))
            models += asyncio.run(phase(b.url, "/v1/models", h))
    hp, mp = pct(health, 99), pct(models, 99)
    print(f"{CLIENTS} concurrent clients, {len(models)} requests per route, "
          f"response {len(str(body))} bytes")
    print(f"GET /health     p50 {pct(health, 50):7.2f} ms  p99 {hp:7.2f} ms")
    print(f"GET /v1/models  p50 {pct(models, 50):7.2f} ms  p99 {mp:7.2f} ms")
    print(f"ratio p99 {mp / hp:.2f}x (goal <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
