"""Dataset files: an `.npz` holding one array per input/output name (numpy only).

Regression tasks: one float array per input and per output, `[N, *shape]`.
Detection: the image input `[N, C, H, W]` (0-255), `labels` `[N]` (int class
ids) and `boxes` `[N, 4]` (`center_x, center_y, size_x, size_y` in pixels).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kairo_backend.errors import ValidationFailed
from kairo_backend.training.features import dataset_array_names, is_detection

MIN_SAMPLES = 10


def load_arrays(source: Path | bytes) -> dict[str, np.ndarray]:
    """Read an `.npz` (no pickles); raises ValidationFailed when it is not one."""
    try:
        f = io.BytesIO(source) if isinstance(source, bytes) else source
        with np.load(f, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValidationFailed(f"file: not a readable .npz archive ({exc})") from exc


def check_arrays(arrays: dict[str, np.ndarray], features: dict[str, Any]) -> int:
    """Check the arrays against the features description; return the sample count."""
    needed = dataset_array_names(features)
    missing = [n for n in needed if n not in arrays]
    if missing:
        raise ValidationFailed(
            f"file: missing array(s) {', '.join(missing)}; expected {', '.join(needed)}")
    counts = {n: int(arrays[n].shape[0]) if arrays[n].ndim else -1 for n in needed}
    n = counts[needed[0]]
    if any(c != n for c in counts.values()):
        raise ValidationFailed(f"file: arrays have different sample counts {counts}")
    if n < MIN_SAMPLES:
        raise ValidationFailed(f"file: needs at least {MIN_SAMPLES} samples, has {n}")
    expected: dict[str, tuple[int, ...]] = {}
    for e in features["inputs"]:
        expected[e["name"]] = tuple(e["shape"])
    if is_detection(features):
        expected["labels"] = ()
        expected["boxes"] = (4,)
    else:
        for e in features["outputs"]:
            expected[e["name"]] = tuple(e["shape"])
    for name, shape in expected.items():
        arr = arrays[name]
        if tuple(arr.shape[1:]) != shape:
            raise ValidationFailed(
                f"file.{name}: per-sample shape {list(arr.shape[1:])} does not match "
                f"features shape {list(shape)}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValidationFailed(f"file.{name}: must be numeric, got {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValidationFailed(f"file.{name}: contains NaN or infinite values")
    if is_detection(features):
        labels = arrays["labels"]
        n_classes = len(features["classes"])
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or \
                labels.max() >= n_classes:
            raise ValidationFailed(f"file.labels: must be integers in 0..{n_classes - 1}")
    return n


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return path.stat().st_size
