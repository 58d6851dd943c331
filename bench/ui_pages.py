"""The dashboard's pages with 100 models and 1,000 runs: each page's answer time
(p50, p99) against GET /v1/models on the same data, in the same server.

Goal: every page under 300 ms. The data is seeded through the store the way the
server writes it (submit, claim, an epoch at a time, finish; heartbeats and
deployments through the fleet store), then one server answers every route. The
routes take turns, round after round, so drift hits them alike.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import httpx
from backend_common import Backend, pct

from kairo_backend.core.util import now
from kairo_backend.store import Store
from kairo_backend.store.fleet import FleetStore

MODELS = 100
RUNS_PER_MODEL = 10
EPOCHS = 20
ROBOTS = 30
DATASETS = 20
ROUNDS = 60
GOAL_MS = 300.0


def seed(data_dir: Path) -> tuple[str, str, str]:
    """Fill the data dir; (API key, a model id, one of its run ids)."""
    rng = random.Random(0)
    store = Store(data_dir / "kairo.db")
    key = store.create_key("bench")
    ws = store.ensure_workspace("bench")
    datasets = []
    for i in range(DATASETS):
        ds_id = f"ds_bench{i:04d}"
        store.insert_dataset({
            "id": ds_id, "workspace_id": ws, "name": f"demo-navigation-{i}",
            "task": "navigation", "samples": 3000, "path": str(data_dir / f"{ds_id}.npz"),
            "size_bytes": 120_000, "created_at": now(), "dropped": {"stale_input": i},
            "features": {"task": "navigation", "inputs": [], "outputs": []}})
        datasets.append(ds_id)
    fleet = FleetStore(store)
    some_model, some_run = "", ""
    for m in range(MODELS):
        for v in range(RUNS_PER_MODEL):
            queued = store.submit_run(
                ws, robot_id=f"rob_bench{m:03d}", task="navigation", name=None,
                dataset_id=rng.choice(datasets), architecture="mlp",
                config={"epochs": EPOCHS, "learning_rate": 0.002, "batch_size": 64},
                samples=3000, estimated_duration_s=10.0, max_queued=10)
            assert queued is not None
            run = store.claim_next_run()
            assert run is not None
            loss = 0.5
            for epoch in range(1, EPOCHS + 1):
                loss *= 0.85
                progress = {"epoch": epoch, "epochs_total": EPOCHS, "loss": loss,
                            "val_loss": loss * 1.2, "estimated_remaining_s": 0.0}
                store.set_progress(run["id"], progress,
                                   f"epoch {epoch}/{EPOCHS} loss={loss:.6f} "
                                   f"val_loss={loss * 1.2:.6f} (0.10s)")
            failed = v == 3 and m % 10 == 0
            store.finish_run(
                run["id"], "failed" if failed else "complete",
                error="diverged" if failed else None,
                metrics=None if failed else {
                    "final_loss": loss, "val_loss": loss * 1.2, "accuracy": 0.95,
                    "val_accuracy": 0.93, "epochs_run": EPOCHS,
                    "inference_latency_p99_ms": 0.2},
                artifact_size_mb=0.1, sha256=None if failed else f"{m:04d}{v:04d}" * 8)
            some_model, some_run = run["model_id"], run["id"]
        store.promote(some_model, "v9")
        if m < ROBOTS:
            robot = f"rob_fleet{m:03d}"
            fleet.record_heartbeat(ws, robot, {
                "period_s": 3600.0, "node": f"/{robot}/kairo_inference", "task": "navigation",
                "model_id": some_model,
                "serving": {"model_id": some_model, "version": "v9", "sha256": "ab" * 32,
                            "lifecycle_state": "active", "provider": "CPUExecutionProvider",
                            "deployment_id": None},
                "health": {"window_s": 10.0, "rate_hz": 20.0, "latency_p50_ms": 0.3,
                           "latency_p99_ms": 0.9, "processed": 200, "dropped": 0,
                           "errors": 0},
                "refused": [], "shadow": None})
            fleet.create_deployment(ws, some_model, version="v10", mode="active",
                                    robots=[robot], previous_version="v9",
                                    guard={"max_error_rate": 0.01, "max_drop_rate": 0.05,
                                           "max_divergence": None, "min_observation_s": 30.0,
                                           "report_within_s": 3600.0})
    store.close()
    return key, some_model, some_run


def main() -> int:
    backend = Backend()
    t0 = time.perf_counter()
    # before the server starts: its dispatcher would take the queued runs
    key, model_id, run_id = seed(backend.data_dir)
    seeded_s = time.perf_counter() - t0
    with backend as b:
        routes = {
            "GET /v1/models (baseline)": "/v1/models",
            "/ui/models": "/ui/models",
            "/ui/models/{id}": f"/ui/models/{model_id}",
            "/ui/models/{id}/runs/{run}": f"/ui/models/{model_id}/runs/{run_id}",
            "/ui/fleet": "/ui/fleet",
            "/ui/datasets": "/ui/datasets",
        }
        with httpx.Client(base_url=b.url, timeout=30) as api, \
                httpx.Client(base_url=b.url, timeout=30) as ui:
            api.headers["Authorization"] = f"Bearer {key}"
            r = ui.post("/ui/signin", data={"api_key": key}, headers={"Origin": b.url})
            assert r.status_code == 303, r.text
            models = api.get("/v1/models").json()
            assert models["total"] == MODELS
            assert sum(len(m["versions"]) for m in models["data"]) == MODELS * RUNS_PER_MODEL
            sizes = {}
            for name, path in routes.items():  # warm-up, and every answer is whole
                client = api if path.startswith("/v1") else ui
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.status_code)
                sizes[name] = len(answer.content)
            assert json.loads(api.get("/v1/robots").content)["total"] == ROBOTS
            times: dict[str, list[float]] = {name: [] for name in routes}
            order = list(routes.items())
            for i in range(ROUNDS):
                for name, path in order[i % len(order):] + order[:i % len(order)]:
                    client = api if path.startswith("/v1") else ui
                    t = time.perf_counter()
                    answer = client.get(path)
                    times[name].append((time.perf_counter() - t) * 1000)
                    assert answer.status_code == 200
    base50 = pct(times["GET /v1/models (baseline)"], 50)
    base99 = pct(times["GET /v1/models (baseline)"], 99)
    print(f"{MODELS} models, {MODELS * RUNS_PER_MODEL} runs ({EPOCHS} epochs logged each), "
          f"{ROBOTS} robots, {ROBOTS} deployments, {DATASETS} datasets; seeded in "
          f"{seeded_s:.1f} s; {ROUNDS} requests per route, one at a time")
    worst = 0.0
    for name, samples in times.items():
        p50, p99 = pct(samples, 50), pct(samples, 99)
        if name.startswith("/ui"):
            worst = max(worst, p99)
        print(f"{name:28s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
              f"ratio p50 {p50 / base50:5.2f}x  p99 {p99 / base99:5.2f}x  "
              f"{sizes[name] / 1e3:7.1f} kB")
    print(f"slowest dashboard page p99 {worst:.2f} ms (goal < {GOAL_MS:.0f} ms): "
          f"{'met' if worst < GOAL_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
