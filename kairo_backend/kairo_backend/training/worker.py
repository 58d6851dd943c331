"""One training run: `python -m kairo_backend.training.worker`, or `run()` in a Ray task.

Started by the dispatcher's executor; writes progress and logs to the DB as
it goes, the artifacts beside it, and the final status. As a process it dies
with its parent (Linux PR_SET_PDEATHSIG), so a killed server leaves no
orphan to finish a run that the restarted server already marked failed; a
Ray task dies with its driver, the server, the same way (Ray ends a dead
driver's tasks).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from kairo_backend.core.config import database_for
from kairo_backend.exporters.artifacts import file_sha256
from kairo_backend.store import Store
from kairo_backend.store.db import BACKGROUND_BUSY_TIMEOUT_S

# Attempts at recording a failure before leaving it to the server, which keeps trying.
RECORD_ATTEMPTS = 3


def unfinished_artifact_dir(model_dir: Path, version: str, attempt: int) -> Path:
    """Where one attempt at a run writes its artifact before it is put in place: its own,
    so that two attempts (a stalled replica's and the one that took over) never share one."""
    return model_dir / f".{version}.tmp{attempt}"


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent_pid:
        sys.exit(3)


def run(data_dir: Path, run_id: str, attempt: int, parent_pid: int | None, threads: int,
        database: Path | str | None = None) -> int:
    """Train run `run_id`, recording everything in the data dir; the exit status.
    `attempt`: the run's `interruptions` when the server claimed it; every write is
    fenced by it (Store.finish_run), so a worker whose run was taken over by another
    replica meanwhile writes nothing more and ends.
    `parent_pid`: the server's process, whose end ends the run (None: not a child of it).
    `database`: the server's (a Ray task's environment is not the server's); by
    default the one `database_for` finds."""
    t_start = time.perf_counter()
    store = Store(database or database_for(data_dir), busy_timeout_s=BACKGROUND_BUSY_TIMEOUT_S)
    try:
        return _train(store, data_dir, run_id, attempt, parent_pid, threads, t_start)
    finally:
        store.close()  # a Ray worker process trains other runs after this one


def _train(store: Store, data_dir: Path, run_id: str, attempt: int, parent_pid: int | None,
           threads: int, t_start: float) -> int:
    job = store.get_run(run_id)
    if job is None or job["status"] != "running" or job["interruptions"] != attempt:
        return 0
    try:
        import torch

        from kairo_backend.training import export, trainer
        from kairo_backend.training.config import TrainConfig
        from kairo_backend.training.datasets import load_arrays

        torch.set_num_threads(threads)
        ds = store.dataset_by_id(job["dataset_id"])
        if ds is None:
            raise FileNotFoundError(f"dataset {job['dataset_id']} no longer exists")
        arrays = load_arrays(Path(ds["path"]))
        features = ds["features"]
        config = TrainConfig(**job["config"])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        store.log(run_id, f"training on {device}, {ds['samples']} samples, "
                          f"{job['architecture']}, torch threads {threads}")
        setup = trainer.prepare(arrays, features, job["architecture"], config, seed=0,
                                device=device)
        features = setup.features  # with the training envelope: model.pt and features.json match the ONNX
        epoch_seconds: list[float] = []

        def on_epoch(info: trainer.EpochInfo) -> bool:
            if parent_pid is not None and os.getppid() != parent_pid:
                sys.exit(3)
            epoch_seconds.append(info.seconds)
            per_epoch = sum(epoch_seconds) / len(epoch_seconds)
            remaining = per_epoch * (info.epochs_total - info.epoch) + 1.0  # + export
            progress = {"epoch": info.epoch, "epochs_total": info.epochs_total,
                        "loss": info.loss, "val_loss": info.val_loss,
                        "estimated_remaining_s": round(max(remaining, 0.0), 1)}
            line = (f"epoch {info.epoch}/{info.epochs_total} loss={info.loss:.6f} "
                    f"val_loss={info.val_loss:.6f} ({info.seconds:.2f}s)")
            return store.set_progress(run_id, progress, line, attempt)

        result = trainer.fit(setup, on_epoch)
        if result.epochs_run < config.epochs:
            return 0  # no longer running: cancelled or deleted
        for note in result.notes:
            store.log(run_id, note)
        model_dir = data_dir / "artifacts" / job["model_id"]
        tmp = unfinished_artifact_dir(model_dir, job["version"], attempt)
        final = model_dir / job["version"]
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        onnx_path = tmp / "model.onnx"
        export.export_onnx(setup.wrapper, onnx_path, model_id=job["model_id"],
                           version=job["version"])
        diff = export.parity(setup.wrapper, onnx_path, setup.raw_val)
        if diff > 1e-3:
            raise RuntimeError(f"ONNX export differs from torch by {diff:.2e}")
        latency = export.latency_p99_ms(onnx_path, features)
        torch.save({"features": features, "architecture": job["architecture"],
                    "state_dict": setup.wrapper.cpu().state_dict()}, tmp / "model.pt")
        (tmp / "features.json").write_text(json.dumps(features, indent=2))
        sha = file_sha256(onnx_path)
        size_mb = round(onnx_path.stat().st_size / 1e6, 3)
        metrics = {"final_loss": round(result.final_loss, 6),
                   "val_loss": round(result.val_loss, 6),
                   "accuracy": round(result.accuracy, 4),
                   "val_accuracy": round(result.val_accuracy, 4),
                   "epochs_run": result.epochs_run,
                   "inference_latency_p99_ms": round(latency, 3)}
        store.log(run_id, f"exported model.onnx ({size_mb} MB, sha256 {sha[:12]}…, "
                          f"torch/onnx max diff {diff:.1e}, p99 {latency:.3f} ms)")
        def publish() -> None:  # under the run's lock: no other attempt completes it meanwhile
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)

        ok = store.finish_run(run_id, "complete", metrics=metrics, artifact_size_mb=size_mb,
                              sha256=sha, only_from=("running",),
                              line=f"complete: val_accuracy={metrics['val_accuracy']}",
                              attempt=attempt, publish=publish)
        if not ok:  # cancelled, deleted or taken over while exporting
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                model_dir.rmdir()  # only when empty: a deleted model leaves no directory
            return 0
        overhead = (time.perf_counter() - t_start) - result.train_seconds
        store.record_throughput(f"{job['task']}/{job['architecture']}",
                                result.samples_per_s / (1 - trainer.VAL_FRACTION), overhead)
        return 0
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure fails the run, with its reason
        with contextlib.suppress(OSError):  # stdout is a file on the data dir's disk
            traceback.print_exc()
        # first free what this run wrote: on a full disk that is the space the record needs
        shutil.rmtree(unfinished_artifact_dir(data_dir / "artifacts" / job["model_id"], job["version"],
                                              attempt), ignore_errors=True)
        from kairo_backend.errors import is_disk_full  # imports fastapi: only when needed

        reason = f"{type(exc).__name__}: {exc}"[:500]
        if is_disk_full(exc):
            reason = f"the disk of the data dir is full ({reason})"[:500]
        _record_failure(store, run_id, reason, attempt)
        return 1


def _record_failure(store: Store, run_id: str, reason: str, attempt: int) -> None:
    """Mark the run failed, retrying a little; if that keeps failing the server's
    dispatcher records the exit instead (and shows it meanwhile)."""
    for tried in range(RECORD_ATTEMPTS):
        try:
            store.finish_run(run_id, "failed", error=reason, only_from=("running",),
                             attempt=attempt)
            return
        except Exception as exc:  # noqa: BLE001 - a full disk or a busy database
            with contextlib.suppress(OSError):
                print(f"could not record the failure (try {tried + 1}): {exc}",
                      flush=True)
            time.sleep(0.2 * (tried + 1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kairo_backend.training.worker")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--attempt", type=int, required=True,
                   help="the run's interruptions when it was claimed (its writes are fenced by it)")
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    _die_with_parent(a.parent_pid)
    return run(a.data_dir, a.run_id, a.attempt, a.parent_pid, a.threads)


if __name__ == "__main__":
    raise SystemExit(main())
