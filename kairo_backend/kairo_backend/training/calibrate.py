"""Quick throughput calibration, run once per data dir when no run has been timed yet.

`python -m kairo_backend.training.calibrate --data-dir DIR` trains one short
epoch of each task's default network on demo data and exports it, and stores
samples/s and fixed overhead (process start, export, latency check) per
task/architecture. Finished runs refine these figures afterwards.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

T0 = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kairo_backend.training.calibrate")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    os.nice(10)  # never slow down a real run
    import tempfile

    import torch

    from kairo_backend.core.config import database_for
    from kairo_backend.store import Store
    from kairo_backend.store.db import BACKGROUND_BUSY_TIMEOUT_S
    from kairo_backend.training import export, trainer
    from kairo_backend.training.config import TrainConfig
    from kairo_backend.training.demo import make_demo
    from kairo_backend.training.nets import resolve_architecture

    torch.set_num_threads(a.threads)
    startup = time.perf_counter() - T0
    store = Store(database_for(a.data_dir), busy_timeout_s=BACKGROUND_BUSY_TIMEOUT_S)
    # detection: few images, its network costs ~0.1 s an image to train on one thread
    for task, n in (("manipulation", 1000), ("navigation", 1000), ("object_detection", 60)):
        arch = resolve_architecture("auto", task)
        key = f"{task}/{arch}"
        if store.throughput(key) is not None:
            continue
        arrays, features = make_demo(task, n, seed=1)
        setup = trainer.prepare(arrays, features, arch, TrainConfig(epochs=1), device="cpu")
        trainer.train_epoch(setup)  # warm-up
        t = time.perf_counter()
        trainer.train_epoch(setup)
        trainer.evaluate(setup, setup.val)
        sps = len(setup.train) / (time.perf_counter() - t) / (1 - trainer.VAL_FRACTION)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            path = Path(d) / "m.onnx"
            export.export_onnx(setup.wrapper, path, model_id="mdl_calibrate", version="v1")
            export.parity(setup.wrapper, path, setup.raw_val)
            export.latency_p99_ms(path, features)
            export_s = time.perf_counter() - t
        if store.throughput(key) is None:
            store.record_throughput(key, sps, startup + export_s, weight=1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
