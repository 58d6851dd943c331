"""Training quality: the seed's own request on the demo datasets, through the real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from conftest import Server, cli, wait_run
from kairo_backend.training.nets import ExportWrapper, VectorMLP, build_net, load_wrapper
from kairo_features.tasks import default_features

# The seed's example request (models-api: POST /models/train).
SEED_CONFIG = {"epochs": 30, "learning_rate": 0.001, "batch_size": 64}
# Floors on the default demo datasets (`create-demo TASK`: seed 0, default sizes). The seed's
# example shows 0.931; measured: manipulation 0.9875 (0.8856 before the least-squares start),
# navigation 0.9788 (unchanged). object_detection is left to test_seed_api and test_detection
# (the session's run; the default config's mAP is in kairo_backend/README.md).
FLOORS = {"manipulation": 0.93, "navigation": 0.97}


@pytest.fixture(scope="module")
def seed_config_runs(api: httpx.Client, server: Server) -> dict[str, dict[str, Any]]:
    """Both tasks submitted at once, so they queue behind each other only once."""
    accepted = {}
    for task in FLOORS:
        dataset_id = cli(server.data_dir, "datasets", "create-demo", task, "--workspace", "acme",
                         "--name", f"seed-config-{task}")
        r = api.post("/v1/models/train", json={
            "dataset_id": dataset_id, "robot_id": "rob_quality", "task": task,
            "name": f"seed-config-{task}", "config": SEED_CONFIG})
        assert r.status_code == 202, r.text
        accepted[task] = r.json()
    return {t: wait_run(api, a["model_id"], a["run_id"], timeout=600.0)
            for t, a in accepted.items()}


@pytest.mark.parametrize("task", list(FLOORS))
def test_seed_config_on_the_demo_dataset_reaches_its_floor(
        seed_config_runs: dict[str, dict[str, Any]], task: str) -> None:
    run = seed_config_runs[task]
    assert run["status"] == "complete", run.get("error")
    assert run["metrics"]["epochs_run"] == SEED_CONFIG["epochs"]
    assert run["metrics"]["val_accuracy"] >= FLOORS[task], run["metrics"]


def test_linear_fit_start_recovers_a_linear_map_and_scales_the_rest() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    weight = rng.normal(size=(4, 2))
    y = (x @ weight + [0.5, -1.0] + 0.01 * rng.normal(size=(500, 2))).astype(np.float32)
    net = VectorMLP(4, 2)
    assert net.start_from_linear_fit(x, y)
    assert np.allclose(net.skip.weight.detach().numpy(), weight.T, atol=5e-3)
    assert np.allclose(net.skip.bias.detach().numpy(), [0.5, -1.0], atol=5e-3)
    assert 0.005 < float(net.residual_scale) < 0.02  # the 0.01 noise is all that is left

    few = VectorMLP(4, 2)
    before = few.skip.weight.clone()
    assert not few.start_from_linear_fit(x[:10], y[:10])  # fewer than 4 samples per weight
    assert torch.equal(few.skip.weight, before) and float(few.residual_scale) == 1.0


def test_models_saved_before_residual_scale_still_load(tmp_path: Path) -> None:
    features = default_features("navigation")
    wrapper = ExportWrapper(features, build_net(features, "mlp"))
    state = {k: v for k, v in wrapper.state_dict().items() if k != "net.residual_scale"}
    torch.save({"features": features, "architecture": "mlp", "state_dict": state},
               tmp_path / "model.pt")
    loaded = load_wrapper(str(tmp_path / "model.pt"))
    scan = torch.rand(3, 64) * 5
    assert float(loaded.net.residual_scale) == 1.0
    assert torch.allclose(loaded(scan), wrapper.eval()(scan))
