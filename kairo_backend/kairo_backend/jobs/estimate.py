"""Honest duration estimates from throughput measured on this machine."""

from __future__ import annotations

from kairo_backend.store import Store

# Used only until the calibration (or a first run) has measured this machine.
FALLBACK = {"mlp": (20000.0, 6.0), "cnn": (20.0, 8.0)}  # cnn: the 160x120 detector


def estimate_duration_s(store: Store, task: str, architecture: str, samples: int,
                        epochs: int) -> float:
    measured = store.throughput(f"{task}/{architecture}")
    sps, overhead = measured or FALLBACK.get(architecture, (2000.0, 6.0))
    return overhead + samples * epochs / max(sps, 1e-6)
