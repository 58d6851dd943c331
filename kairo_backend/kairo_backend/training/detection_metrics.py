"""Mean average precision of detections, as `accuracy` / `val_accuracy` of object_detection.

- AP of one class at one IoU threshold (PASCAL VOC 2010+, "all-point"): the
  class's detections over all images, best score first; each is a true positive
  when the ground-truth box of its class it overlaps most (same image) has IoU
  >= the threshold and no better-scored detection took that box yet, else a
  false positive. AP is the area under the precision/recall curve after
  precision is made monotone (each point takes the best precision at any
  recall at or beyond it).
- mAP@0.5: the mean of AP at IoU 0.5 over the classes that have at least one
  ground-truth object (a class never present has no recall to measure).
  mAP@0.5:0.95 (COCO's headline): the mean of mAP over IoU 0.50, 0.55, ..., 0.95.
- No ground-truth object at all: mAP is 0.0 (nothing could be found).
Detections scored <= 0 are padding rows and are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COCO_IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())


def corners(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) boxes [..., 4] as (x1, y1, x2, y2)."""
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x1, y1, x2, y2) box in a [n, 4] with every one in b [m, 4]: [n, m]."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated area under a precision/recall curve (points in score order)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def mean_average_precision(detections: Sequence[np.ndarray], labels: np.ndarray,
                           boxes: np.ndarray, n_classes: int,
                           iou_thresholds: Sequence[float] = (0.5,)) -> float:
    """mAP averaged over classes present and over `iou_thresholds`.

    detections: per image [k, 6] rows (x1, y1, x2, y2, score, class);
    labels [N, M] (class indices, -1 pads) and boxes [N, M, 4] (cx, cy, w, h): the truth.
    """
    if len(detections) != len(labels):
        raise ValueError(f"{len(detections)} images of detections for {len(labels)} of truth")
    truth_corners = corners(boxes.astype(np.float64))
    present = [c for c in range(n_classes) if np.any(labels == c)]
    if not present:
        return 0.0
    per_threshold = []
    for threshold in iou_thresholds:
        aps = []
        for c in present:
            n_truth = int(np.sum(labels == c))
            rows: list[tuple[float, int, np.ndarray]] = []  # (score, image, IoU with each truth box)
            for i, det in enumerate(detections):
                mine = det[(det[:, 5].round() == c) & (det[:, 4] > 0)]
                if not len(mine):
                    continue
                truth = truth_corners[i][labels[i] == c]
                ious = iou_matrix(mine[:, :4].astype(np.float64), truth) if len(truth) \
                    else np.zeros((len(mine), 0))
                rows.extend((float(s), i, iou) for s, iou in zip(mine[:, 4], ious, strict=True))
            rows.sort(key=lambda r: -r[0])  # stable: ties keep image order
            taken: set[tuple[int, int]] = set()
            hits = np.zeros(len(rows))
            for k, (_, image, ious) in enumerate(rows):
                if not len(ious):
                    continue
                best = int(np.argmax(ious))
                if ious[best] >= threshold and (image, best) not in taken:
                    taken.add((image, best))
                    hits[k] = 1.0
            tp = np.cumsum(hits)
            fp = np.cumsum(1.0 - hits)
            recall = tp / n_truth
            precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            aps.append(average_precision(recall, precision))
        per_threshold.append(float(np.mean(aps)))
    return float(np.mean(per_threshold))
