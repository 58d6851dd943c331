"""Operations shared by the HTTP routes and the CLI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kairo_backend.core.config import Settings
from kairo_backend.core.util import new_id, now
from kairo_backend.errors import ArtifactCorrupted, NotFound, Unavailable
from kairo_backend.exporters.artifacts import corruption
from kairo_backend.store import Store
from kairo_backend.store.rows import DatasetRow, RunRow
from kairo_backend.training.datasets import check_arrays, check_features, save_arrays


def create_dataset(settings: Settings, store: Store, ws: str, name: str,
                   arrays: dict[str, np.ndarray], features: Any) -> DatasetRow:
    """Validate arrays against the features description, store both; the dataset row."""
    features = check_features(features)
    samples = check_arrays(arrays, features)
    ds_id = new_id("ds_")
    path = settings.datasets_dir / f"{ds_id}.npz"
    size = save_arrays(path, arrays)
    ds: DatasetRow = {"id": ds_id, "workspace_id": ws, "name": name, "task": features["task"],
          "samples": samples, "features": features, "path": str(path), "size_bytes": size,
          "created_at": now(), "source": None, "dropped": {}}
    try:
        store.insert_dataset(ds)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ds


class ModelFiles:
    """Exports of a model and its deletion never overlap, so that a deletion
    leaves no archive behind and an export never reads a half-deleted model.

    Exports share the model; a deletion waits for the exports in progress
    (new ones answer 404 at once) and then has it alone. One per process:
    the server is the only process that exports or deletes models.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._exports: dict[str, int] = {}
        self._deleting: set[str] = set()

    @contextmanager
    def exporting(self, model_id: str) -> Iterator[None]:
        with self._cond:
            if model_id in self._deleting:
                raise NotFound(f"model {model_id} is being deleted")
            self._exports[model_id] = self._exports.get(model_id, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._exports[model_id] -= 1
                if not self._exports[model_id]:
                    del self._exports[model_id]
                    self._cond.notify_all()

    @contextmanager
    def deleting(self, model_id: str, timeout_s: float = 60.0) -> Iterator[None]:
        with self._cond:
            self._deleting.add(model_id)
            if not self._cond.wait_for(lambda: model_id not in self._exports, timeout_s):
                self._deleting.discard(model_id)
                raise Unavailable(f"model {model_id} is still being exported; retry the "
                                  "delete shortly", headers={"Retry-After": "5"})
        try:
            yield
        finally:
            with self._cond:
                self._deleting.discard(model_id)


model_files = ModelFiles()


def verified_artifact(settings: Settings, store: Store, run: RunRow) -> Path:
    """The path of a complete run's model.onnx once it is checked against the
    sha256 recorded at training; a corrupted one is marked on the version
    (`artifact_error`) and refused with ArtifactCorrupted."""
    path = settings.artifacts_dir / run["model_id"] / run["version"] / "model.onnx"
    try:
        problem = corruption(path, run.get("sha256"))
    except FileNotFoundError:
        raise NotFound(f"the artifact of {run['model_id']} {run['version']} is missing; "
                       "train the version again") from None
    if problem != run.get("artifact_error"):
        store.mark_artifact_error(run["id"], problem)
    if problem is not None:
        raise ArtifactCorrupted(f"the artifact of {run['model_id']} {run['version']} is "
                                f"corrupted: {problem}; train the version again")
    return path
