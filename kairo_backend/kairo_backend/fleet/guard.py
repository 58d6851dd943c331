"""A deployment's guard: from what its robots last reported, its next state.

Pure functions over plain dicts (rows of kairo_backend.store.fleet), so the same
decision is taken on a heartbeat and by the periodic sweep, and tests need no
server. States:

rolling_out  until every target reports the version (serving it, or shadowing it
             for mode shadow) in a heartbeat sent after the deployment was made;
observing    from then on, for the guard's min_observation_s;
complete     every target stayed within the guard that long (the pin stays);
rolled_back  a target crossed a threshold, refused the version at load, served
             or shadowed it from a file whose sha256 is not the version's, or did
             not report it for report_within_s; the reason names robot and threshold.

Only rolling_out and observing deployments are evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kairo_backend.store.rows import DeploymentRow, RobotRow

LIVE = ("rolling_out", "observing", "complete")  # deployments that pin a version
GUARDED = ("rolling_out", "observing")  # deployments whose guard is evaluated


@dataclass
class Verdict:
    state: str
    reason: str | None
    progress: dict[str, dict[str, Any]]
    observing_since: float | None


def error_rate(health: dict[str, Any] | None) -> float:
    """errors / (processed + errors) over the robot's health window."""
    if not health:
        return 0.0
    total = health.get("processed", 0) + health.get("errors", 0)
    return health.get("errors", 0) / total if total else 0.0


def drop_rate(health: dict[str, Any] | None) -> float:
    """dropped / (processed + dropped) over the robot's health window."""
    if not health:
        return 0.0
    total = health.get("processed", 0) + health.get("dropped", 0)
    return health.get("dropped", 0) / total if total else 0.0


def shadow_error_rate(shadow: dict[str, Any] | None) -> float:
    """The candidate's errors / samples (non-finite outputs count as errors)."""
    if not shadow:
        return 0.0
    return float(shadow.get("errors", 0)) / max(1, shadow.get("samples", 0))


def _matches(report: dict[str, Any] | None, model_id: str, version: str) -> bool:
    return report is not None and report.get("model_id") == model_id \
        and report.get("version") == version


def _threshold_crossed(robot_id: str, dep: DeploymentRow, robot: RobotRow) -> str | None:
    """Why a robot that reports the deployment's version fails its guard, or None."""
    guard = dep["guard"]
    health = robot.get("health")
    window = f"{health['window_s']:g} s window" if health else "window"
    rate = error_rate(health)
    if rate > guard["max_error_rate"]:
        return (f"{robot_id}: error rate {rate:.3g} over its last {window} is above "
                f"max_error_rate {guard['max_error_rate']:g}")
    rate = drop_rate(health)
    if rate > guard["max_drop_rate"]:
        return (f"{robot_id}: drop rate {rate:.3g} over its last {window} is above "
                f"max_drop_rate {guard['max_drop_rate']:g}")
    if dep["mode"] == "shadow":
        shadow = robot.get("shadow") or {}
        rate = shadow_error_rate(shadow)
        if rate > guard["max_error_rate"]:
            return (f"{robot_id}: the shadowed {dep['version']} failed on "
                    f"{shadow['errors']} of {shadow['samples']} inputs (error rate "
                    f"{rate:.3g} above max_error_rate {guard['max_error_rate']:g})")
        limit = guard.get("max_divergence")
        if limit is not None and shadow.get("divergence", 0.0) > limit:
            return (f"{robot_id}: shadow divergence {shadow['divergence']:.3g} of "
                    f"{dep['version']} from the active version is above max_divergence "
                    f"{limit:g}")
    return None


def _other_file(robot_id: str, dep: DeploymentRow, report: dict[str, Any],
                expected_sha256: str | None) -> str | None:
    """Why a robot that names the version does not run it: another file's sha256 (a robot
    that reports no sha256 is taken at its word)."""
    reported = report.get("sha256")
    if not reported or not expected_sha256 or reported == expected_sha256:
        return None
    return (f"{robot_id} {'serves' if dep['mode'] == 'active' else 'shadows'} "
            f"{dep['version']} from a file with sha256 {reported[:12]}…, not the version's "
            f"{expected_sha256[:12]}… (a stale or altered model cache on the robot)")


def _refusal(robot_id: str, dep: DeploymentRow, robot: RobotRow) -> str | None:
    for r in robot.get("refused") or ():
        if r.get("model_id") == dep["model_id"] and r.get("version") == dep["version"]:
            detail = ": ".join(p for p in (r.get("code"), r.get("message")) if p)
            return f"{robot_id} refused {dep['version']} at load ({detail or 'no detail'})"
    return None


def evaluate(dep: DeploymentRow, robots: dict[str, RobotRow], at: float,
             expected_sha256: str | None = None) -> Verdict:
    """The deployment's next state at time `at`, given the latest rows of its target
    robots (robot id -> row; a robot without a row has never reported) and the sha256
    recorded for the version."""
    guard = dep["guard"]
    progress: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for robot_id in dep["robots"]:
        entry = dict(dep["progress"].get(robot_id) or {"status": "pending"})
        robot = robots.get(robot_id)
        failure = None
        if robot is not None and robot["last_seen"] >= dep["created_at"]:
            serving = robot.get("serving")
            shadow = robot.get("shadow")
            mine = serving if serving and serving.get("model_id") == dep["model_id"] else None
            entry["version"] = mine["version"] if mine else None
            entry["reported_at"] = robot["last_seen"]
            entry["health"] = robot.get("health")
            entry["shadow"] = shadow if shadow and shadow.get("model_id") == dep["model_id"] \
                else None
            report = serving if dep["mode"] == "active" else shadow
            reached = _matches(report, dep["model_id"], dep["version"])
            failure = _refusal(robot_id, dep, robot)
            if reached and report is not None:
                failure = failure or _other_file(robot_id, dep, report, expected_sha256)
                entry["last_ok"] = robot["last_seen"]
                entry["status"] = "serving" if dep["mode"] == "active" else "shadowing"
                failure = failure or _threshold_crossed(robot_id, dep, robot)
            else:
                entry["status"] = "pending"
        since = entry.get("last_ok") or dep["created_at"]
        if failure is None and at - since > guard["report_within_s"]:
            what = "never reported" if entry.get("last_ok") is None else "stopped reporting"
            failure = (f"{robot_id} {what} {dep['version']} "
                       f"({'shadowed' if dep['mode'] == 'shadow' else 'served'}) within "
                       f"report_within_s {guard['report_within_s']:g} s")
        if failure is not None:
            entry["status"] = "failed"
            entry["reason"] = failure
            failures.append(failure)
        else:
            entry["reason"] = None
        progress[robot_id] = entry
    state, reason, observing_since = dep["state"], dep["reason"], dep["observing_since"]
    if failures:
        return Verdict("rolled_back", "; ".join(failures), progress, observing_since)
    reached_all = all(p["status"] in ("serving", "shadowing") for p in progress.values())
    if state == "rolling_out" and reached_all:
        state, observing_since = "observing", at
    if state == "observing" and observing_since is not None and reached_all \
            and at - observing_since >= guard["min_observation_s"]:
        state = "complete"
        reason = (f"every robot {'served' if dep['mode'] == 'active' else 'shadowed'} "
                  f"{dep['version']} within the guard for "
                  f"{guard['min_observation_s']:g} s")
    return Verdict(state, reason, progress, observing_since)
