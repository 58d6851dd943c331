"""Demo datasets: deterministic by seed, physically meaningful and learnable.

manipulation: a planar 3-link arm (links 0.4, 0.3, 0.2 m). Input: joint
  positions q (rad) and a reachable target point (x, y) (m). Output: the next
  joint position command q + dq, dq a damped-least-squares (resolved-rate IK)
  step toward the target (damping 0.1), gain 0.2, plus 0.1 of the way to the
  rest pose (0, 1, 1) rad within the null space (so a closed loop keeps the
  redundant joint in range), scaled so that no joint moves more than 0.2 rad.
  Tolerance 0.05 rad.
navigation: a robot in a random rectangular room (2-8 m a side) with up to 3
  round obstacles; input a 64-beam 360 degree laser scan (beam i at angle
  -pi + i*2pi/64, ranges clipped to 0.05..6 m). Output the safe velocity:
  front = soft-min of the beams within +-30 degrees (temperature 0.2 m),
  linear.x = 0.5 * clip((front - 0.3) / 1.2, 0, 1) m/s;
  angular.z = 1.0 * (L - R) / (L + R) rad/s, L and R the mean ranges over
  30..90 degrees to the left and to the right: turn toward open space.
  Tolerance 0.1 (m/s, rad/s).
object_detection: 3x120x160 RGB camera images (uint8) of 0-6 shapes of four
  classes on cluttered backgrounds (training/demo_detection.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kairo_backend.errors import ValidationFailed
from kairo_backend.training.demo_detection import render_detection
from kairo_features.tasks import NAV_BEAMS, TASKS, default_features

LINKS = np.array([0.4, 0.3, 0.2])
REST_POSE = np.array([0.0, 1.0, 1.0])
DEFAULT_SAMPLES = {"manipulation": 8000, "navigation": 4000, "object_detection": 2000}


def arm_fk(q: np.ndarray) -> np.ndarray:
    """End-effector (x, y) of the planar arm for joint angles q [N, 3]."""
    a = np.cumsum(q, axis=1)
    return np.stack([(LINKS * np.cos(a)).sum(1), (LINKS * np.sin(a)).sum(1)], axis=1)


def arm_step(q: np.ndarray, target: np.ndarray, gain: float = 0.2, max_step: float = 0.2,
             damping: float = 0.1, null_gain: float = 0.1) -> np.ndarray:
    """Next joint command: one damped least-squares IK step toward the target,
    plus a step toward REST_POSE in the arm's null space (it does not move the
    hand), which keeps the redundant third joint from wandering off."""
    a = np.cumsum(q, axis=1)
    s, c = LINKS * np.sin(a), LINKS * np.cos(a)
    # d(x,y)/dq_j = sum over links k >= j
    jx = -np.flip(np.cumsum(np.flip(s, 1), 1), 1)
    jy = np.flip(np.cumsum(np.flip(c, 1), 1), 1)
    jac = np.stack([jx, jy], axis=1)  # [N, 2, 3]
    jac_t = jac.transpose(0, 2, 1)
    pinv = jac_t @ np.linalg.inv(jac @ jac_t + damping**2 * np.eye(2))  # [N, 3, 2]
    err = target - arm_fk(q)
    null_space = np.eye(3) - pinv @ jac
    dq = (gain * (pinv @ err[..., None])[..., 0]
          + null_gain * (null_space @ (REST_POSE - q)[..., None])[..., 0])
    scale = np.minimum(1.0, max_step / np.maximum(np.abs(dq).max(1, keepdims=True), 1e-9))
    return q + dq * scale


def _manipulation(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    q = rng.uniform([-np.pi / 2, -2.0, -2.0], [np.pi / 2, 2.0, 2.0], size=(n, 3))
    # targets near the arm's current reach, as a controller tracking a moving point sees them
    q_goal = q + rng.normal(0.0, 0.35, size=(n, 3))
    target = arm_fk(q_goal)
    cmd = arm_step(q, target)
    return {"joint_positions": q.astype(np.float32), "target": target.astype(np.float32),
            "joint_commands": cmd.astype(np.float32)}


def _ray_box(px: np.ndarray, py: np.ndarray, dx: np.ndarray, dy: np.ndarray,
             w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Distance from inside an axis-aligned box [0,w]x[0,h] to its wall along (dx, dy)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(dx > 0, (w - px) / dx, np.where(dx < 0, -px / dx, np.inf))
        ty = np.where(dy > 0, (h - py) / dy, np.where(dy < 0, -py / dy, np.inf))
    return np.minimum(tx, ty)


def nav_rule(scan: np.ndarray) -> np.ndarray:
    """The documented safe-velocity rule: scan [N, 64] -> (linear.x, angular.z) [N, 2]."""
    ang = -np.pi + np.arange(scan.shape[1]) * 2 * np.pi / scan.shape[1]
    front = np.abs(ang) <= np.radians(30)
    left = (ang > np.radians(30)) & (ang <= np.radians(90))
    right = (ang < -np.radians(30)) & (ang >= -np.radians(90))
    tau = 0.2
    r = scan[:, front]
    m = r.min(1, keepdims=True)
    soft = m[:, 0] - tau * np.log(np.exp(-(r - m) / tau).mean(1))
    lin = 0.5 * np.clip((soft - 0.3) / 1.2, 0.0, 1.0)
    lm, rm = scan[:, left].mean(1), scan[:, right].mean(1)
    angz = 1.0 * (lm - rm) / (lm + rm)
    return np.stack([lin, angz], axis=1)


def _navigation(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    w = rng.uniform(2.0, 8.0, n)
    h = rng.uniform(2.0, 8.0, n)
    px = rng.uniform(0.25, 0.75, n) * w
    py = rng.uniform(0.25, 0.75, n) * h
    yaw = rng.uniform(-np.pi, np.pi, n)
    ang = -np.pi + np.arange(NAV_BEAMS) * 2 * np.pi / NAV_BEAMS
    theta = yaw[:, None] + ang[None, :]
    dx, dy = np.cos(theta), np.sin(theta)
    dist = _ray_box(px[:, None], py[:, None], dx, dy, w[:, None], h[:, None])
    for _ in range(3):
        present = rng.random(n) < 0.7
        rad = rng.uniform(0.15, 0.5, n)
        d = rng.uniform(rad + 0.3, 3.0)
        phi = yaw + rng.normal(0.0, 0.8, n)
        cx, cy = px + d * np.cos(phi), py + d * np.sin(phi)
        ox, oy = (px - cx)[:, None], (py - cy)[:, None]
        b = ox * dx + oy * dy
        c = ox**2 + oy**2 - rad[:, None] ** 2
        disc = b**2 - c
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        hit = present[:, None] & (disc > 0) & (t > 0)
        dist = np.where(hit, np.minimum(dist, t), dist)
    scan = np.clip(dist + rng.normal(0.0, 0.01, dist.shape), 0.05, 6.0)
    return {"scan": scan.astype(np.float32), "cmd_vel": nav_rule(scan).astype(np.float32)}


def make_demo(task: str, samples: int | None = None,
              seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, features) of the demo dataset for a task."""
    if task not in TASKS:
        raise ValidationFailed(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    n = samples or DEFAULT_SAMPLES[task]
    if not 10 <= n <= 1_000_000:
        raise ValidationFailed(f"samples: must be in 10..1000000, got {n}")
    rng = np.random.default_rng(seed)
    gen = {"manipulation": _manipulation, "navigation": _navigation,
           "object_detection": render_detection}[task]
    return gen(n, rng), default_features(task)
