"""mAP (training/detection_metrics.py) against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kairo_backend.training.detection_metrics import (
    COCO_IOU_THRESHOLDS,
    average_precision,
    iou_matrix,
    mean_average_precision,
)


def truth(*objects: tuple[int, float, float, float, float], m: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """One image's labels [1, m] and boxes [1, m, 4] from (label, cx, cy, w, h)."""
    labels = np.full((1, m), -1, np.int64)
    boxes = np.zeros((1, m, 4), np.float32)
    for j, (label, *box) in enumerate(objects):
        labels[0, j] = label
        boxes[0, j] = box
    return labels, boxes


def dets(*rows: tuple[float, float, float, float, float, int]) -> np.ndarray:
    """Detections (x1, y1, x2, y2, score, class) of one image."""
    return np.array(rows, np.float32).reshape(-1, 6)


def test_iou_of_corner_boxes() -> None:
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 6.25]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0, 0.625]])


def test_all_point_average_precision_by_hand() -> None:
    # TP, FP, TP over 2 objects: recall .5 .5 1, precision 1 .5 2/3
    # -> monotone precision 1, 2/3, 2/3: AP = .5 * 1 + .5 * 2/3
    ap = average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(0.5 + 1 / 3)
    assert average_precision(np.array([]), np.array([])) == 0.0


def test_ranked_detections_give_the_hand_computed_ap() -> None:
    labels, boxes = truth((0, 10, 10, 10, 10), (0, 50, 50, 20, 20))
    found = dets((5, 5, 15, 15, 0.9, 0),        # TP on the first
                 (70, 70, 90, 90, 0.8, 0),      # FP: nothing there
                 (40, 40, 60, 60, 0.7, 0))      # TP on the second
    assert mean_average_precision([found], labels, boxes, 2) == pytest.approx(0.5 + 1 / 3)


def test_a_duplicate_is_a_false_positive_and_order_is_by_score() -> None:
    labels, boxes = truth((1, 10, 10, 10, 10), (1, 50, 50, 10, 10))
    # the duplicate of object 1 scores above the hit on object 2:
    # TP, FP, TP -> 5/6; listed in another order the answer is the same
    found = dets((45, 45, 55, 55, 0.5, 1), (5, 5, 15, 15, 0.9, 1), (5, 5, 15, 15, 0.8, 1))
    assert mean_average_precision([found], labels, boxes, 2) == pytest.approx(0.5 + 1 / 3)


def test_classes_present_are_averaged_and_the_class_must_match() -> None:
    labels, boxes = truth((0, 10, 10, 10, 10), (1, 50, 50, 10, 10))
    found = dets((5, 5, 15, 15, 0.9, 0),      # class 0: AP 1
                 (45, 45, 55, 55, 0.9, 2),    # right place, class 2 (absent from the truth)
                 (45, 45, 55, 55, 0.4, 1))    # class 1 found, but after a class-1 FP:
    found = np.concatenate([found, dets((80, 80, 90, 90, 0.6, 1))])
    # class 1: FP (0.6) then TP (0.4): recall 0, 1; precision 0, .5 -> AP .5; class 2 ignored
    assert mean_average_precision([found], labels, boxes, 3) == pytest.approx(0.75)


def test_iou_thresholds_and_coco_average() -> None:
    labels, boxes = truth((0, 5, 5, 10, 10))
    found = dets((0, 0, 10, 6.25, 0.9, 0))  # IoU 0.625
    assert mean_average_precision([found], labels, boxes, 1) == 1.0
    assert mean_average_precision([found], labels, boxes, 1, (0.75,)) == 0.0
    # a hit at 0.50, 0.55 and 0.60 of the ten thresholds
    assert mean_average_precision([found], labels, boxes, 1, COCO_IOU_THRESHOLDS) == pytest.approx(0.3)


def test_missed_objects_padding_rows_and_empty_truth() -> None:
    labels, boxes = truth((0, 5, 5, 10, 10), (0, 50, 50, 10, 10))
    found = dets((0, 0, 10, 10, 0.9, 0), (45, 45, 55, 55, 0.0, 0))  # the second row is padding
    assert mean_average_precision([found], labels, boxes, 1) == pytest.approx(0.5)
    empty_labels, empty_boxes = truth()
    assert mean_average_precision([found], empty_labels, empty_boxes, 1) == 0.0
    with pytest.raises(ValueError, match="2 images of detections for 1 of truth"):
        mean_average_precision([found, found], labels, boxes, 1)


def test_detections_are_matched_within_their_own_image() -> None:
    la, ba = truth((0, 10, 10, 10, 10))
    lb, bb = truth((0, 50, 50, 10, 10))
    labels, boxes = np.concatenate([la, lb]), np.concatenate([ba, bb])
    # image 0's detection sits where image 1's object is: a FP, not a hit
    found = [dets((45, 45, 55, 55, 0.9, 0)), dets((45, 45, 55, 55, 0.8, 0))]
    # FP then TP over 2 objects: recall 0, .5; precision 0, .5 -> AP .25
    assert mean_average_precision(found, labels, boxes, 1) == pytest.approx(0.25)
