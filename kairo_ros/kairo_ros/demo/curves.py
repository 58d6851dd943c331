"""Training curves of the demo's runs, read from the runs' per-epoch log lines."""

from __future__ import annotations

import os
import pathlib
import re
import tempfile
from collections.abc import Sequence

from kairo_ros.files import usual_file_mode

# The backend logs one line per epoch: "epoch 3/20 loss=0.012345 val_loss=0.013456 (0.41s)".
_EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ loss=([0-9.eE+-]+) val_loss=([0-9.eE+-]+)")


def epoch_curve(logs: Sequence[str]) -> tuple[list[int], list[float], list[float]]:
    """(epochs, loss, val_loss) from a run's log lines."""
    epochs: list[int] = []
    loss: list[float] = []
    val_loss: list[float] = []
    for line in logs:
        match = _EPOCH_LINE.search(line)
        if match:
            epochs.append(int(match.group(1)))
            loss.append(float(match.group(2)))
            val_loss.append(float(match.group(3)))
    return epochs, loss, val_loss


def save_training_curves(runs: Sequence[tuple[str, Sequence[str]]], path: pathlib.Path) -> pathlib.Path:
    """Plot loss and val_loss per epoch of each (label, log lines); write the PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    # Earlier runs drawn wider and on top: runs on one dataset share their first epochs.
    for order, (label, logs) in enumerate(runs):
        epochs, loss, val_loss = epoch_curve(logs)
        if not epochs:
            raise ValueError(f"run {label} has no epoch lines in its logs")
        width, z = 1.5 + 2.0 * (len(runs) - 1 - order), len(runs) - order
        (line,) = ax.plot(epochs, loss, linewidth=width, alpha=0.8, zorder=z, label=f"{label} loss")
        ax.plot(epochs, val_loss, linestyle="--", linewidth=width, alpha=0.8, zorder=z,
                color=line.get_color(), label=f"{label} val_loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("kairo demo: manipulation model, two versions")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.chmod(tmp, usual_file_mode())  # the user's file: not mkstemp's 0600
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path.resolve()
