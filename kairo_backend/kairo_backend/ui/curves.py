"""A run's loss / val_loss curve, read from the epoch lines its worker logs
(kairo_backend.training.worker: "epoch 3/20 loss=0.123456 val_loss=0.234567 (0.12s)")."""

from __future__ import annotations

import math
import re
from typing import Any

from kairo_backend.store import Store

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) loss=(\S+) val_loss=(\S+)")


def epoch_point(line: str) -> dict[str, Any] | None:
    """{epoch, epochs_total, loss, val_loss} of an epoch line (a non-finite loss: None)."""
    m = EPOCH_LINE.match(line)
    if m is None:
        return None

    def finite(text: str) -> float | None:
        try:
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    return {"epoch": int(m[1]), "epochs_total": int(m[2]), "loss": finite(m[3]),
            "val_loss": finite(m[4])}


def epochs_after(store: Store, run_id: str, after_log_id: int = 0
                 ) -> tuple[list[dict[str, Any]], int]:
    """The run's epoch points logged after `after_log_id`, and the last log id read.

    A re-queued run trains again from epoch 1: only the latest attempt's points count,
    so a point whose epoch does not follow the one before starts the curve again
    (the caller sees epoch 1 and resets).
    """
    rows = store.conn.execute(
        "SELECT id, line FROM run_logs WHERE run_id=? AND id>? AND line LIKE 'epoch %'"
        " ORDER BY id", (run_id, after_log_id)).fetchall()
    points: list[dict[str, Any]] = []
    last = after_log_id
    for row in rows:
        last = int(row["id"])
        point = epoch_point(row["line"])
        if point is None:
            continue
        if points and point["epoch"] <= points[-1]["epoch"]:
            points = []
        points.append(point)
    return points, last
