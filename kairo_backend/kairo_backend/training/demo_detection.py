"""The object_detection demo: camera-sized images of several shapes on clutter.

Each image is 3x120x160 RGB (uint8, 0-255), deterministic from the seed:
- background: a dull base colour, a linear gradient, stripes at a random angle
  and period (half of the images), Gaussian pixel noise, and 2-7 distractor
  blobs (elongated ellipses and thin bars in low-saturation colours);
- 0-6 objects of the four SHAPE_CLASSES, each in its class's hue (jittered in
  brightness) with its own form: circle (red), square (green), upright triangle
  (blue), plus-shaped cross (yellow); sizes 10-48 px (log-uniform), placed fully
  inside the frame; objects may overlap (later ones drawn on top), but no box
  covers more than 40 % of a smaller one's, so none is hidden.
Labels: `labels` [N, 6] class indices, -1 where an image has fewer objects;
`boxes` [N, 6, 4] (center_x, center_y, size_x, size_y) in pixels, the tight
box of the drawn shape, zeros where the label is -1.
"""

from __future__ import annotations

import numpy as np

from kairo_features.tasks import IMAGE_SHAPE, SHAPE_CLASSES

MAX_OBJECTS = 6
MIN_SIZE, MAX_SIZE = 10.0, 48.0
MAX_COVERED = 0.4
# Class hues (RGB); each object scales its class's colour by 0.75-1.0.
CLASS_COLOURS = np.array([[225, 45, 40], [40, 200, 70], [45, 95, 235], [235, 215, 40]], np.float32)
_PLACEMENT_TRIES = 30


def _covered(a: np.ndarray, b: np.ndarray) -> float:
    """The share of the smaller of two (cx, cy, w, h) boxes that the other covers."""
    lo = np.maximum(a[:2] - a[2:] / 2, b[:2] - b[2:] / 2)
    hi = np.minimum(a[:2] + a[2:] / 2, b[:2] + b[2:] / 2)
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    return inter / min(float(a[2] * a[3]), float(b[2] * b[3]))


def shape_mask(label: int, cx: float, cy: float, size: float,
               xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Pixels (centres xx, yy) covered by a shape of class `label` whose tight box is
    centred at (cx, cy) with side `size`."""
    half = size / 2
    dx, dy = xx - cx, yy - cy
    if label == 0:  # circle
        return dx**2 + dy**2 <= half**2
    if label == 1:  # square
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if label == 2:  # upright triangle: apex at the top centre, base along the bottom
        frac = (dy + half) / size
        return (np.abs(dy) <= half) & (np.abs(dx) <= frac * half)
    # cross: two bars a third of the size thick
    bar = size / 6
    inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    return inside & ((np.abs(dx) <= bar) | (np.abs(dy) <= bar))


def _background(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    h, w = xx.shape
    base = rng.uniform(40, 170, size=(3, 1, 1))
    angle = rng.uniform(0, np.pi)
    ramp = (xx * np.cos(angle) + yy * np.sin(angle)) / max(h, w)
    img = base + rng.uniform(-40, 40, size=(3, 1, 1)) * ramp
    if rng.random() < 0.5:
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(6, 30)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
        stripes = np.where((phase % 1.0) < 0.5, 1.0, -1.0)
        img = img + rng.uniform(8, 30) * rng.uniform(0.5, 1.0, size=(3, 1, 1)) * stripes
    for _ in range(rng.integers(2, 8)):
        grey = rng.uniform(30, 210)
        colour = grey + rng.uniform(-25, 25, size=3)  # low saturation: not a class hue
        bx, by = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.6:  # elongated ellipse
            a, b = rng.uniform(6, 30), rng.uniform(2, 8)
            rot = rng.uniform(0, np.pi)
            u = (xx - bx) * np.cos(rot) + (yy - by) * np.sin(rot)
            v = -(xx - bx) * np.sin(rot) + (yy - by) * np.cos(rot)
            mask = (u / a) ** 2 + (v / b) ** 2 <= 1
        else:  # thin bar
            length, thick = rng.uniform(15, 60), rng.uniform(1, 3)
            rot = rng.uniform(0, np.pi)
            u = (xx - bx) * np.cos(rot) + (yy - by) * np.sin(rot)
            v = -(xx - bx) * np.sin(rot) + (yy - by) * np.cos(rot)
            mask = (np.abs(u) <= length / 2) & (np.abs(v) <= thick)
        img[:, mask] = colour[:, None]
    return img


def render_detection(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`n` demo images with their labels and boxes (module docstring)."""
    c, h, w = IMAGE_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    images = np.empty((n, c, h, w), dtype=np.uint8)
    labels = np.full((n, MAX_OBJECTS), -1, dtype=np.int64)
    boxes = np.zeros((n, MAX_OBJECTS, 4), dtype=np.float32)
    n_classes = len(SHAPE_CLASSES)
    for i in range(n):
        img = _background(rng, xx, yy)
        placed: list[np.ndarray] = []
        for _ in range(rng.integers(0, MAX_OBJECTS + 1)):
            label = int(rng.integers(0, n_classes))
            size = float(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(MAX_SIZE))))
            for _ in range(_PLACEMENT_TRIES):
                box = np.array([rng.uniform(size / 2, w - size / 2),
                                rng.uniform(size / 2, h - size / 2), size, size], np.float32)
                if all(_covered(box, other) <= MAX_COVERED for other in placed):
                    break
            else:
                continue  # no room left for this one
            mask = shape_mask(label, float(box[0]), float(box[1]), size, xx, yy)
            colour = CLASS_COLOURS[label] * rng.uniform(0.75, 1.0)
            img[:, mask] = colour[:, None]
            labels[i, len(placed)] = label
            boxes[i, len(placed)] = box
            placed.append(box)
        img += rng.normal(0, rng.uniform(3, 14), size=img.shape)
        images[i] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return {"image": images, "labels": labels, "boxes": boxes}
