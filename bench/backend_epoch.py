"""One training epoch of kairo_backend's trainer vs a plain torch loop (goal <= 1.15x).

Same model architecture, same data, same batch size, same thread count. The
trainer's epoch is what a worker does per epoch: shuffled mini-batches, a
validation pass and a progress row written to SQLite. The baseline is the
textbook loop (train mini-batches only), on a copy of the same network as
the trainer built it (least-squares start included) with the same optimiser.
The ratio is the median over interleaved pairs of (ours / plain), so load
from other processes on a shared machine hits both sides of a pair alike.
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from kairo_backend.store import Store
from kairo_backend.training import trainer
from kairo_backend.training.config import TrainConfig
from kairo_backend.training.demo import make_demo
from kairo_backend.training.detection import detection_loss


def main() -> int:
    torch.set_num_threads(1)
    task = sys.argv[1] if len(sys.argv) > 1 else "manipulation"
    n = 8000 if task != "object_detection" else 1500
    arrays, features = make_demo(task, n, seed=0)
    arch = "cnn" if task == "object_detection" else "mlp"
    setup = trainer.prepare(arrays, features, arch, TrainConfig(epochs=1, batch_size=64),
                            device="cpu")
    plain_net = copy.deepcopy(setup.net)
    plain_opt = torch.optim.Adam(plain_net.parameters(), lr=1e-3)
    x, y, targets = setup.train.x, setup.train.y, setup.train.targets
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "k.db")
        ws = store.ensure_workspace("bench")
        res = store.submit_run(ws, robot_id="rob_b", task=task, name=None, dataset_id="ds_b",
                               architecture=arch, config={"epochs": 1, "learning_rate": 1e-3,
                                                          "batch_size": 64},
                               samples=n, estimated_duration_s=1, max_queued=10)
        assert res is not None
        store.claim_next_run()
        run_id = res[0]["id"]

        def ours() -> float:
            t = time.perf_counter()
            loss = trainer.train_epoch(setup)
            val_loss, _ = trainer.evaluate(setup, setup.val)
            store.set_progress(run_id, {"epoch": 1, "epochs_total": 1, "loss": loss,
                                        "val_loss": val_loss, "estimated_remaining_s": 0},
                               f"epoch loss={loss}")
            return time.perf_counter() - t

        vx, vy, vt = setup.val.x, setup.val.y, setup.val.targets

        def pick(t: dict[str, torch.Tensor] | None, idx: Any) -> dict[str, torch.Tensor] | None:
            return None if t is None else {k: v[idx] for k, v in t.items()}

        def loss_of(out: Any, yy: torch.Tensor, tt: dict[str, torch.Tensor] | None) -> torch.Tensor:
            if tt is not None:
                return detection_loss(out, tt)
            return F.mse_loss(out, yy)

        train_only: list[float] = []

        def plain() -> float:
            t = time.perf_counter()
            plain_net.train()
            perm = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], 64):
                idx = perm[i:i + 64]
                loss = loss_of(plain_net(trainer.net_input(setup, x[idx])),
                               y[idx] if targets is None else y, pick(targets, idx))
                plain_opt.zero_grad()
                loss.backward()
                plain_opt.step()
            train_only.append(time.perf_counter() - t)
            plain_net.eval()
            with torch.no_grad():
                val = 0.0
                for i in range(0, vx.shape[0], 256):
                    val += float(loss_of(plain_net(trainer.net_input(setup, vx[i:i + 256])),
                                         vy[i:i + 256] if vt is None else vy,
                                         pick(vt, slice(i, i + 256))))
            return time.perf_counter() - t

        ours(), plain()  # warm-up
        a, b = [], []
        for _ in range(21 if task != "object_detection" else 7):
            a.append(ours())
            b.append(plain())
    mo, mp = statistics.median(a), statistics.median(b)
    paired = statistics.median(o / p for o, p in zip(a, b, strict=True))
    mt = statistics.median(train_only[1:])
    print(f"task {task}: {len(x)} train + {len(vx)} val samples, batch 64, 1 thread")
    print(f"kairo epoch (train + val + progress row): {mo * 1000:.1f} ms (median)")
    print(f"plain torch loop (train + val):          {mp * 1000:.1f} ms (median)")
    print(f"plain torch loop (train only):           {mt * 1000:.1f} ms (median)")
    print(f"ratio vs train-only loop {mo / mt:.3f}x")
    print(f"ratio of the medians {mo / mp:.3f}x")
    print(f"ratio {paired:.3f}x (median of {len(a)} interleaved pairs; goal <= 1.15x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
