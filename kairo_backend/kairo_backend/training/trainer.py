"""The torch training loop, split so a benchmark can time one epoch against a plain loop.

Accuracy (documented in README.md):
- regression (manipulation, navigation): share of samples whose every output
  value is within the features' `tolerance` of the truth, in output units;
- detection: mAP@0.5 of the exported graph's detections (all-point
  interpolated AP per class, averaged over the classes present;
  training/detection_metrics.py); mAP@0.5:0.95 goes to the run's log.
`accuracy` is measured on the training split (detection: its first
DETECTION_ACCURACY_ROWS images), `val_accuracy` on the validation split (the
last 20 % of a seeded shuffle, never trained on).
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
from kairo_backend.training.detection import STRIDE, build_targets, decode, detection_loss
from kairo_backend.training.detection_metrics import COCO_IOU_THRESHOLDS, mean_average_precision
from kairo_backend.training.nets import ExportWrapper, VectorMLP, build_net
from kairo_features.schema import DETECTION_TASK, DETECTION_TYPE, IMAGE_TYPE

VAL_FRACTION = 0.2
DETECTION_ACCURACY_ROWS = 500  # training images the detection `accuracy` is measured on
DETECTION_WARMUP_STEPS = 30  # linear warm-up of the learning rate, then a cosine decay


@dataclass
class Split:
    x: torch.Tensor  # normalised inputs [N, D]; detection: images as stored [N, C, H, W]
    y: torch.Tensor  # normalised targets [N, O]; detection: unused (empty)
    targets: dict[str, torch.Tensor] | None = None  # detection: detection.build_targets
    labels: np.ndarray | None = None  # detection truth: [N, M] class ids, -1 pads
    boxes: np.ndarray | None = None  # detection truth: [N, M, 4] (cx, cy, w, h) pixels

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
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    image_scale: float = 1.0  # detection: 1/255 for uint8 images, else 1


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
    raw_inputs = [arrays[e["name"]] for e in features["inputs"]]
    net = build_net(features, architecture)
    wrapper = ExportWrapper(features, net)

    image_scale = 1.0
    if features["task"] == DETECTION_TASK:
        stored = arrays[first]
        image_scale = 1 / 255 if stored.dtype == np.uint8 else 1.0
        # kept as stored, converted per batch: float32 copies of every image cost 4x the memory
        mean, std = _image_stats(stored[np.sort(tr_idx)], image_scale)
        wrapper.in_mean.copy_(torch.from_numpy(mean[:, None, None]))
        wrapper.in_std.copy_(torch.from_numpy(std[:, None, None]))
        _, c_h, c_w = features["inputs"][0]["shape"]
        all_labels = arrays["labels"].astype(np.int64)
        all_boxes = arrays["boxes"].astype(np.float32)
        targets = build_targets(all_labels, all_boxes, len(features["classes"]),
                                -(-c_h // STRIDE), -(-c_w // STRIDE))
        images = torch.from_numpy(np.ascontiguousarray(stored))

        def split(idx: np.ndarray) -> Split:
            index = torch.from_numpy(idx)
            return Split(images[index].to(dev), torch.zeros(0, device=dev),
                         {k: torch.from_numpy(v[idx]).to(dev) for k, v in targets.items()},
                         all_labels[idx], all_boxes[idx])
    else:
        x = np.concatenate([r.astype(np.float32).reshape(n, -1) for r in raw_inputs], axis=1)
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
    train, val = split(tr_idx), split(va_idx)
    scheduler = None
    if features["task"] == DETECTION_TASK:
        # from scratch with batch norm: warm up, then decay so the last epochs settle
        total = max(1, config.epochs * math.ceil(len(train) / config.batch_size))
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _warm_cosine(step, total))
    raw_val = [r[va_idx].astype(np.float32) * np.float32(image_scale) for r in raw_inputs]
    return Setup(features, architecture, config, net, wrapper, opt, train, val,
                 raw_val, dev, gen, scheduler, image_scale)


def _warm_cosine(step: int, total: int) -> float:
    warm = min(DETECTION_WARMUP_STEPS, total // 4)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def _image_stats(images: np.ndarray, scale: float, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of [N, C, H, W] images times `scale`, a chunk at a time."""
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].astype(np.float64) * scale
        total += part.sum(axis=(0, 2, 3))
        squares += (part**2).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def net_input(setup: Setup, x: torch.Tensor) -> torch.Tensor:
    """A batch as the trainable core takes it (detection: stored images normalised)."""
    if setup.train.targets is None:
        return x
    w = setup.wrapper
    return (x.to(torch.float32) * setup.image_scale - w.in_mean) / w.in_std


def batch_loss(setup: Setup, x: torch.Tensor, y: torch.Tensor,
               targets: dict[str, torch.Tensor] | None, out: Any = None) -> torch.Tensor:
    out = setup.net(net_input(setup, x)) if out is None else out
    if targets is not None:
        return detection_loss(out, targets)
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
        targets = {k: v[idx] for k, v in tr.targets.items()} if tr.targets is not None else None
        loss = batch_loss(setup, tr.x[idx], tr.y[idx] if targets is None else tr.y, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if setup.scheduler is not None:
            setup.scheduler.step()
        total += loss.detach() * idx.shape[0]
    return float(total) / len(tr)


@torch.no_grad()
def evaluate(setup: Setup, split: Split, batch: int = 256,
             limit: int | None = None) -> tuple[float, float]:
    """(mean loss, accuracy) on a split (its first `limit` rows); accuracy as documented above."""
    if split.targets is not None:
        loss, map_50, _ = evaluate_detection(setup, split, limit=limit)
        return loss, map_50
    net = setup.net
    net.eval()
    total, hits = 0.0, 0
    for start in range(0, len(split), batch):
        x, y = split.x[start:start + batch], split.y[start:start + batch]
        out = net(x)
        total += float(batch_loss(setup, x, y, None, out)) * x.shape[0]
        err = (out - y).abs() * setup.wrapper.out_std
        ok = (err <= setup.features["tolerance"]).all(dim=1)
        hits += int(ok.sum())
    return total / len(split), hits / len(split)


@torch.no_grad()
def evaluate_detection(setup: Setup, split: Split, batch: int = 64, limit: int | None = None,
                       coco: bool = False) -> tuple[float, float, float]:
    """(mean loss, mAP@0.5, mAP@0.5:0.95 or nan unless `coco`) on a detection split's
    first `limit` images, from the detections the exported graph would give."""
    assert split.targets is not None and split.labels is not None and split.boxes is not None
    net = setup.net
    net.eval()
    n = len(split) if limit is None else min(limit, len(split))
    k = setup.wrapper.max_detections
    total = 0.0
    found: list[np.ndarray] = []
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        x = split.x[start:stop]
        out = net(net_input(setup, x))
        targets = {name: v[start:stop] for name, v in split.targets.items()}
        total += float(detection_loss(out, targets)) * x.shape[0]
        found.extend(decode(out[0], out[1], out[2], k).cpu().numpy())
    n_classes = len(setup.features["classes"])
    labels, boxes = split.labels[:n], split.boxes[:n]
    map_50 = mean_average_precision(found, labels, boxes, n_classes)
    map_coco = mean_average_precision(found, labels, boxes, n_classes, COCO_IOU_THRESHOLDS) \
        if coco else math.nan
    return total / max(n, 1), map_50, map_coco


@dataclass
class FitResult:
    setup: Setup
    final_loss: float
    val_loss: float
    accuracy: float
    val_accuracy: float
    epochs_run: int
    train_seconds: float
    # lines for the run's log beyond the metrics (detection: mAP@0.5:0.95)
    notes: list[str] = field(default_factory=list)

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
    if setup.val.targets is not None:
        _, acc, coco = evaluate_detection(setup, setup.train, limit=DETECTION_ACCURACY_ROWS,
                                          coco=True)
        val_loss, val_acc, val_coco = evaluate_detection(setup, setup.val, coco=True)
        notes = [f"mAP@0.5 {acc:.4f} (train, first {DETECTION_ACCURACY_ROWS} images), "
                 f"{val_acc:.4f} (val); mAP@0.5:0.95 {coco:.4f} (train), {val_coco:.4f} (val)"]
        return FitResult(setup, loss, val_loss, acc, val_acc, done, train_seconds, notes)
    _, acc = evaluate(setup, setup.train)
    val_loss, val_acc = evaluate(setup, setup.val)
    return FitResult(setup, loss, val_loss, acc, val_acc, done, train_seconds)
