"""Training configuration: defaults and ranges, validated with the field named."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kairo_backend.errors import ValidationFailed

DEFAULTS = {"epochs": 20, "learning_rate": 1e-3, "batch_size": 64}
# Per-task defaults over DEFAULTS. object_detection: the demo (2000 images of
# 160x120) reaches val mAP@0.5 >= 0.8 within 3 minutes on 2 CPU cores (0.96 in
# under 2 minutes; kairo_backend/README.md, "Metrics and accuracy").
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "object_detection": {"epochs": 3, "learning_rate": 3e-3, "batch_size": 32},
}
RANGES = {"epochs": (1, 1000), "learning_rate": (1e-6, 1.0), "batch_size": (1, 4096)}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = DEFAULTS["epochs"]  # type: ignore[assignment]
    learning_rate: float = DEFAULTS["learning_rate"]
    batch_size: int = DEFAULTS["batch_size"]  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for name, (lo, hi) in RANGES.items():
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValidationFailed(f"config.{name}: must be in {lo}..{hi}, got {v}")

    @classmethod
    def from_request(cls, cfg: dict[str, Any] | None, task: str | None = None) -> TrainConfig:
        """0, null or absent means the default (the task's, where it has its own)."""
        cfg = cfg or {}
        defaults = {**DEFAULTS, **TASK_DEFAULTS.get(task or "", {})}
        values: dict[str, Any] = {}
        for name, default in defaults.items():
            v = cfg.get(name)
            values[name] = default if v is None or v == 0 else v
        return cls(epochs=int(values["epochs"]), learning_rate=float(values["learning_rate"]),
                   batch_size=int(values["batch_size"]))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
