"""The object detector: a small CenterNet-style network, its targets, loss and in-graph decode.

Why this design (issue 16): it must train from scratch on 2 CPU cores in minutes
and export to one ONNX graph that does everything, NMS included, with ops every
runtime has.
- Single-stage and anchor-free: every output cell of a stride-4 map predicts, per
  class, how likely an object's centre lies there (a heatmap), plus the box's
  size and the centre's sub-cell offset. No anchors to tune for the data's
  scales, no proposal stage, and one dense loss that trains fast.
- Stride 4 (a 40x30 map for 160x120): two objects' centres rarely share a cell,
  and offsets recover sub-pixel centres; the stride-8 block (upsampled and
  fused back) gives the receptive field that 48 px objects need.
- NMS as CenterNet does it: a cell is kept only where it equals the 3x3
  max-pool of the heatmap (a local peak), then the K best peaks over all
  classes are taken with TopK. MaxPool, Equal, TopK and Gather are plain ONNX
  ops, so decode, suppression and the top-K all live in the graph; the output
  is [B, K, 6] rows (x1, y1, x2, y2, score, class) in input pixels, best first.
  Non-peaks score exactly 0, so with fewer than K peaks the last rows are 0.
- Sizes are regressed as log(pixels / stride) (scale-invariant L1), the heatmap
  with the penalty-reduced focal loss on Gaussian targets (Zhou et al. 2019,
  "Objects as Points"), which copes with a map that is almost all background.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

STRIDE = 4
SIZE_LOSS_WEIGHT = 0.5
OFFSET_LOSS_WEIGHT = 1.0
# The prior of a heatmap cell holding a centre, so training starts near the answer.
HEAT_PRIOR = 0.01


def _block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CenterNetDetector(nn.Module):
    """Normalised image [B, C, H, W] in; (heatmap logits [B, classes, H/4, W/4],
    log sizes [B, 2, H/4, W/4], offsets [B, 2, H/4, W/4]) out.

    About 40 M multiply-adds for 160x120: narrow at full resolution, the width at
    stride 8 where cells are few, the two strides fused by a 1x1 conv, one shared
    3x3 head block.
    """

    def __init__(self, channels: int, n_classes: int, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(_block(channels, width // 2, 2), _block(width // 2, width, 2))
        self.deep = nn.Sequential(_block(width, 2 * width, 2), _block(2 * width, 2 * width),
                                  _block(2 * width, 2 * width, dilation=2))  # stride 8
        self.fuse = nn.Sequential(nn.Conv2d(3 * width, width, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.head = nn.Sequential(_block(width, width), nn.Conv2d(width, n_classes + 4, 1))
        self.n_classes = n_classes
        last = self.head[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        with torch.no_grad():
            last.bias[:n_classes].fill_(-math.log((1 - HEAT_PRIOR) / HEAT_PRIOR))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s4 = self.stem(x)
        s8 = self.deep(s4)
        up = F.interpolate(s8, size=s4.shape[-2:], mode="nearest")
        out = self.head(self.fuse(torch.cat([s4, up], dim=1)))
        c = self.n_classes
        return out[:, :c], out[:, c:c + 2], out[:, c + 2:]


def decode(heat_logits: torch.Tensor, log_size: torch.Tensor, offset: torch.Tensor,
           k: int) -> torch.Tensor:
    """The K best local peaks as [B, K, 6] rows (x1, y1, x2, y2, score, class) in input pixels."""
    b, n_classes, h, w = heat_logits.shape
    heat = torch.sigmoid(heat_logits)
    # peaks found on the logits: sigmoid saturates to exactly 1.0 in float32, which would
    # make a plateau of equal neighbours (duplicates, and a different set in each runtime)
    is_peak = F.max_pool2d(heat_logits, 3, stride=1, padding=1) == heat_logits
    peaks = heat * is_peak.to(heat.dtype)
    scores, index = peaks.reshape(b, -1).topk(k, dim=1)
    cls = torch.div(index, h * w, rounding_mode="floor")
    cell = index - cls * (h * w)
    row = torch.div(cell, w, rounding_mode="floor")
    col = cell - row * w
    gather = cell.unsqueeze(1).expand(b, 2, k)
    size = torch.exp(torch.gather(log_size.reshape(b, 2, h * w), 2, gather)) * STRIDE
    off = torch.gather(offset.reshape(b, 2, h * w), 2, gather)
    cx = (col.to(heat.dtype) + off[:, 0]) * STRIDE
    cy = (row.to(heat.dtype) + off[:, 1]) * STRIDE
    half_w, half_h = size[:, 0] / 2, size[:, 1] / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, scores,
                        cls.to(heat.dtype)], dim=2)


def gaussian_radius(w: float, h: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: how far a corner may move with IoU still >= min_overlap
    (the smallest of its three cases), in the same units as w and h."""
    r1 = (w + h - math.sqrt((w + h) ** 2 - 4 * w * h * (1 - min_overlap) / (1 + min_overlap))) / 2
    b2 = 2 * (w + h)
    r2 = (b2 - math.sqrt(b2**2 - 16 * (1 - min_overlap) * w * h)) / 4
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (w + h)
    r3 = (-b3 + math.sqrt(b3**2 - 4 * a3 * (min_overlap - 1) * w * h)) / (2 * a3)
    return min(r1, r2, r3)


def build_targets(labels: np.ndarray, boxes: np.ndarray, n_classes: int,
                  out_h: int, out_w: int) -> dict[str, np.ndarray]:
    """Training targets of every image at once.

    labels [N, M] (-1 pads), boxes [N, M, 4] (cx, cy, w, h) in input pixels ->
    heat [N, classes, out_h, out_w] (Gaussian peaks of 1 at each centre cell),
    cell [N, M] (flat index of the centre cell), mask [N, M] (1 for a real object),
    log_size [N, M, 2] (log of w, h in cells), offset [N, M, 2] (centre minus its cell).
    """
    n, m = labels.shape
    heat = np.zeros((n, n_classes, out_h, out_w), np.float32)
    cell = np.zeros((n, m), np.int64)
    mask = np.zeros((n, m), np.float32)
    log_size = np.zeros((n, m, 2), np.float32)
    offset = np.zeros((n, m, 2), np.float32)
    ys, xs = np.arange(out_h, dtype=np.float32)[:, None], np.arange(out_w, dtype=np.float32)[None, :]
    for i in range(n):
        for j in range(m):
            label = int(labels[i, j])
            if label < 0:
                continue
            cx, cy, bw, bh = (float(v) / STRIDE for v in boxes[i, j])
            if bw <= 0 or bh <= 0:
                continue
            col = min(max(int(cx), 0), out_w - 1)
            row = min(max(int(cy), 0), out_h - 1)
            sigma = max(0.0, gaussian_radius(bw, bh)) * 2 / 6 + 1e-3  # CenterNet: diameter / 6
            peak = np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
            np.maximum(heat[i, label], peak, out=heat[i, label])
            cell[i, j] = row * out_w + col
            mask[i, j] = 1.0
            log_size[i, j] = (math.log(bw), math.log(bh))
            offset[i, j] = (cx - col, cy - row)
    return {"heat": heat, "cell": cell, "mask": mask, "log_size": log_size, "offset": offset}


def focal_loss(heat_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Penalty-reduced focal loss (alpha 2, beta 4) summed, per object."""
    pos = target.eq(1).to(heat_logits.dtype)
    log_p = F.logsigmoid(heat_logits)
    log_not_p = F.logsigmoid(-heat_logits)
    p = torch.exp(log_p)
    pos_loss = -(log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = -(log_not_p * p**2 * (1 - target) ** 4 * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def detection_loss(out: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   targets: dict[str, torch.Tensor]) -> torch.Tensor:
    heat_logits, log_size, offset = out
    b = heat_logits.shape[0]
    mask = targets["mask"].unsqueeze(2)  # [B, M, 1]
    n_obj = mask.sum().clamp(min=1.0)
    cell = targets["cell"].unsqueeze(1).expand(b, 2, -1)  # [B, 2, M]
    pred_size = torch.gather(log_size.reshape(b, 2, -1), 2, cell).transpose(1, 2)
    pred_off = torch.gather(offset.reshape(b, 2, -1), 2, cell).transpose(1, 2)
    size_loss = (F.l1_loss(pred_size, targets["log_size"], reduction="none") * mask).sum() / n_obj
    off_loss = (F.l1_loss(pred_off, targets["offset"], reduction="none") * mask).sum() / n_obj
    return (focal_loss(heat_logits, targets["heat"]) + SIZE_LOSS_WEIGHT * size_loss
            + OFFSET_LOSS_WEIGHT * off_loss)
