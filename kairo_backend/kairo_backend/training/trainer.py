"""The torch training loop, split so a benchmark can time one epoch against a plain loop.

Accuracy (documented in README.md):
- regression (manipulation, navigation): share of samples whose every output
  value is within the features' `tolerance` of the truth, in output units;
- detection: share of images whose top-scoring class is right AND whose box
  has IoU >= 0.5 with the true box.
`accuracy` is measured on the training split, `val_accuracy` on the
validation split (the last 20 % of a seeded shuffle, never trained on).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kairo_backend.training.config import TrainConfig
from kairo_backend.training.nets import ExportWrapper, VectorMLP, build_net
from kairo_features.schema import DETECTION_TASK, DETECTION_TYPE, IMAGE_TYPE

VAL_FRACTION = 0.2
BOX_LOSS_WEIGHT = 5.0


@dataclass
class Split:
    x: torch.Tensor  # normalised inputs, flat [N, D] or images [N, C, H, W]
    y: torch.Tensor  # normalised targets [N, O]; detection: unit boxes [N, 4]
    labels: torch.Tensor | None = None  # detection class ids [N]

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Setup:
    features: dict[str, Any]  # the dataset's, with the training envelope (`with_envelope`)
    architecture: str
    config: TrainConfig
    net: nn.Module
    wrapper: ExportWrapper
    optimizer: torch.optim.Optimizer
    train: Split
    val: Split
    raw_val: list[np.ndarray]  # raw inputs of the validation split (for parity checks)
    device: torch.device
    generator: torch.Generator = field(default_factory=torch.Generator)


@dataclass
class EpochInfo:
    epoch: int
    epochs_total: int
    loss: float
    val_loss: float
    seconds: float


def _stats(x: np.ndarray, axis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=axis)
    std = x.std(axis=axis)
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def split_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows): the last VAL_FRACTION of a seeded shuffle is validation."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * VAL_FRACTION)))
    return perm[: n - n_val], perm[n - n_val:]


def with_envelope(features: dict[str, Any], arrays: dict[str, np.ndarray],
                  rows: np.ndarray) -> dict[str, Any]:
    """A copy of `features` whose vector entries carry `range`: per value, min and max over `rows`.

    The envelope the inference node guards with (docs/features.md, "Envelope").
    Images and detection outputs get none: a pixel is bounded by its encoding,
    and a per-pixel envelope would refuse every brighter scene.
    """
    doc = copy.deepcopy(features)
    for side in ("inputs", "outputs"):
        for entry in doc[side]:
            entry.pop("range", None)
            if entry["type"] in (IMAGE_TYPE, DETECTION_TYPE):
                continue
            seen = arrays[entry["name"]][rows].astype(np.float32).reshape(len(rows), -1)
            # float32, as the reader gives values: the bounds compare exactly at inference
            entry["range"] = {"min": seen.min(axis=0).tolist(), "max": seen.max(axis=0).tolist()}
    return doc


def prepare(arrays: dict[str, np.ndarray], features: dict[str, Any], architecture: str,
            config: TrainConfig, *, seed: int = 0, device: str | None = None) -> Setup:
    """Split, normalise (statistics of the training split) and build net and optimizer."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    first = features["inputs"][0]["name"]
    n = int(arrays[first].shape[0])
    tr_idx, va_idx = split_rows(n, seed)
    features = with_envelope(features, arrays, tr_idx)
    raw_inputs = [arrays[e["name"]].astype(np.float32) for e in features["inputs"]]
    net = build_net(features, architecture)
    wrapper = ExportWrapper(features, net)

    if features["task"] == DETECTION_TASK:
        img = raw_inputs[0]
        mean, std = _stats(img[tr_idx], (0, 2, 3))
        wrapper.in_mean.copy_(torch.from_numpy(mean[:, None, None]))
        wrapper.in_std.copy_(torch.from_numpy(std[:, None, None]))
        xn = (img - mean[None, :, None, None]) / std[None, :, None, None]
        scale = wrapper.box_scale.numpy()
        yn = arrays["boxes"].astype(np.float32) / scale
        labels = torch.from_numpy(arrays["labels"].astype(np.int64))

        def split(idx: np.ndarray) -> Split:
            return Split(torch.from_numpy(xn[idx]).to(dev), torch.from_numpy(yn[idx]).to(dev),
                         labels[idx].to(dev))
    else:
        x = np.concatenate([r.reshape(n, -1) for r in raw_inputs], axis=1)
        y = np.concatenate([arrays[e["name"]].astype(np.float32).reshape(n, -1)
                            for e in features["outputs"]], axis=1)
        in_mean, in_std = _stats(x[tr_idx], (0,))
        out_mean, out_std = _stats(y[tr_idx], (0,))
        wrapper.in_mean.copy_(torch.from_numpy(in_mean))
        wrapper.in_std.copy_(torch.from_numpy(in_std))
        wrapper.out_mean.copy_(torch.from_numpy(out_mean))
        wrapper.out_std.copy_(torch.from_numpy(out_std))
        xn, yn = (x - in_mean) / in_std, (y - out_mean) / out_std
        if isinstance(net, VectorMLP):
            net.start_from_linear_fit(xn[tr_idx], yn[tr_idx])

        def split(idx: np.ndarray) -> Split:
            return Split(torch.from_numpy(xn[idx]).to(dev), torch.from_numpy(yn[idx]).to(dev))

    wrapper.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return Setup(features, architecture, config, net, wrapper, opt, split(tr_idx), split(va_idx),
                 [r[va_idx] for r in raw_inputs], dev, gen)


def batch_loss(setup: Setup, x: torch.Tensor, y: torch.Tensor,
               labels: torch.Tensor | None, out: Any = None) -> torch.Tensor:
    out = setup.net(x) if out is None else out
    if labels is not None:
        logits, box = out
        return F.cross_entropy(logits, labels) + BOX_LOSS_WEIGHT * F.smooth_l1_loss(
            box, y, beta=0.05)
    return F.mse_loss(out, y)


def train_epoch(setup: Setup) -> float:
    """One pass over the training split in shuffled mini-batches; the mean loss."""
    net, opt, tr = setup.net, setup.optimizer, setup.train
    net.train()
    bs = setup.config.batch_size
    order = torch.randperm(len(tr), generator=setup.generator).to(setup.device)
    total = torch.zeros((), device=setup.device)
    for start in range(0, len(tr), bs):
        idx = order[start:start + bs]
        labels = tr.labels[idx] if tr.labels is not None else None
        loss = batch_loss(setup, tr.x[idx], tr.y[idx], labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * idx.shape[0]
    return float(total) / len(tr)


@torch.no_grad()
def evaluate(setup: Setup, split: Split, batch: int = 256) -> tuple[float, float]:
    """(mean loss, accuracy) on a split; accuracy as documented above."""
    net = setup.net
    net.eval()
    total, hits = 0.0, 0
    for start in range(0, len(split), batch):
        x, y = split.x[start:start + batch], split.y[start:start + batch]
        labels = split.labels[start:start + batch] if split.labels is not None else None
        out = net(x)
        total += float(batch_loss(setup, x, y, labels, out)) * x.shape[0]
        if labels is not None:
            logits, box = out
            ok = (logits.argmax(1) == labels) & (box_iou(box, y) >= 0.5)
        else:
            err = (out - y).abs() * setup.wrapper.out_std
            ok = (err <= setup.features["tolerance"]).all(dim=1)
        hits += int(ok.sum())
    return total / len(split), hits / len(split)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (cx, cy, w, h) boxes, row by row."""
    a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    inter = (torch.minimum(a2, b2) - torch.maximum(a1, b1)).clamp(min=0).prod(1)
    union = a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter
    return inter / union.clamp(min=1e-9)


@dataclass
class FitResult:
    setup: Setup
    final_loss: float
    val_loss: float
    accuracy: float
    val_accuracy: float
    epochs_run: int
    train_seconds: float

    @property
    def samples_per_s(self) -> float:
        return len(self.setup.train) * self.epochs_run / max(self.train_seconds, 1e-6)


def fit(setup: Setup, on_epoch: Callable[[EpochInfo], bool] | None = None) -> FitResult:
    """Train for config.epochs; `on_epoch` returning False stops early."""
    t0 = time.perf_counter()
    loss = val_loss = math.nan
    epochs = setup.config.epochs
    done = 0
    for epoch in range(1, epochs + 1):
        te = time.perf_counter()
        loss = train_epoch(setup)
        val_loss, _ = evaluate(setup, setup.val)
        done = epoch
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged at epoch {epoch} (loss {loss}); lower config.learning_rate")
        info = EpochInfo(epoch, epochs, loss, val_loss, time.perf_counter() - te)
        if on_epoch is not None and not on_epoch(info):
            break
    train_seconds = time.perf_counter() - t0
    _, acc = evaluate(setup, setup.train)
    val_loss, val_acc = evaluate(setup, setup.val)
    return FitResult(setup, loss, val_loss, acc, val_acc, done, train_seconds)
