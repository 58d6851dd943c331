"""Operations shared by the HTTP routes and the CLI."""

from __future__ import annotations

from typing import Any

import numpy as np

from kairo_backend.core.config import Settings
from kairo_backend.core.util import new_id, now
from kairo_backend.store import Store
from kairo_backend.training.datasets import check_arrays, save_arrays
from kairo_backend.training.features import validate_features


def create_dataset(settings: Settings, store: Store, ws: str, name: str,
                   arrays: dict[str, np.ndarray], features: Any) -> dict[str, Any]:
    """Validate arrays against the features description, store both; the dataset row."""
    features = validate_features(features)
    samples = check_arrays(arrays, features)
    ds_id = new_id("ds_")
    path = settings.datasets_dir / f"{ds_id}.npz"
    size = save_arrays(path, arrays)
    ds = {"id": ds_id, "workspace_id": ws, "name": name, "task": features["task"],
          "samples": samples, "features": features, "path": str(path), "size_bytes": size,
          "created_at": now()}
    try:
        store.insert_dataset(ds)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ds
