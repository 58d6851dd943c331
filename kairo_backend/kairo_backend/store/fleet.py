"""The fleet's tables: robots as they last reported, and deployments of model versions.

`FleetStore` works on the Store's per-thread connection and its write transactions
(`Store.tx`), on either engine; its tables are made by kairo_backend/store/migrations
(0003); rows come back as dicts with their JSON columns decoded. Robots are
per workspace (the same robot id in two workspaces is two robots). Times are unix
seconds; kairo_backend.schemas.fleet turns rows into the API's objects.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from kairo_backend.core.util import new_id, now
from kairo_backend.fleet.guard import GUARDED, LIVE, Verdict, evaluate
from kairo_backend.store.engine import Connection, Row
from kairo_backend.store.rows import DeploymentRow, ModelRow, RobotRow, as_row

if TYPE_CHECKING:
    from kairo_backend.store.db import Store

log = logging.getLogger("kairo_backend.fleet")

_LIVE_MARKS = ",".join("?" * len(LIVE))
_GUARDED_MARKS = ",".join("?" * len(GUARDED))


def _robot_row(row: Row) -> RobotRow:
    d = as_row(RobotRow, row)
    d["serving"], d["health"], d["shadow"] = (
        json.loads(row[k]) if row[k] else None for k in ("serving", "health", "shadow"))
    d["refused"] = (json.loads(row["refused"]) if row["refused"] else None) or []
    return d


def _deployment_row(row: Row) -> DeploymentRow:
    d = as_row(DeploymentRow, row)
    d["robots"] = json.loads(row["robots"])
    d["guard"] = json.loads(row["guard"])
    d["progress"] = json.loads(row["progress"])
    return d


def reports_model(robot: RobotRow, model_id: str) -> bool:
    """Whether a robot's heartbeats name the model (its source, or what it serves)."""
    serving = robot.get("serving") or {}
    return robot["model_id"] == model_id or serving.get("model_id") == model_id


class FleetStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # robots ----------------------------------------------------------------
    def record_heartbeat(self, ws: str, robot_id: str, report: dict[str, Any],
                         at: float | None = None) -> None:
        """Store a heartbeat (a HeartbeatRequest's dict) as the robot's latest report."""
        at = now() if at is None else at
        values = (report.get("node") or "", report.get("task"), report.get("model_id") or "",
                  *(json.dumps(report.get(k)) if report.get(k) is not None else None
                    for k in ("serving", "health", "shadow")),
                  json.dumps(report.get("refused") or []), report["period_s"], at)
        with self.store.tx() as c:
            c.execute(
                "INSERT INTO robots (node, task, model_id, serving, health, shadow, refused,"
                " period_s, last_seen, workspace_id, id, first_seen)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (workspace_id, id) DO UPDATE SET"
                " node=excluded.node, task=excluded.task, model_id=excluded.model_id,"
                " serving=excluded.serving, health=excluded.health, shadow=excluded.shadow,"
                " refused=excluded.refused, period_s=excluded.period_s,"
                " last_seen=excluded.last_seen", (*values, ws, robot_id, at))

    def get_robot(self, ws: str, robot_id: str) -> RobotRow | None:
        row = self.store.conn.execute("SELECT * FROM robots WHERE workspace_id=? AND id=?",
                                      (ws, robot_id)).fetchone()
        return _robot_row(row) if row else None

    def list_robots(self, ws: str) -> list[RobotRow]:
        """The workspace's robots, sorted by id."""
        rows = self.store.conn.execute("SELECT * FROM robots WHERE workspace_id=? ORDER BY id",
                                       (ws,)).fetchall()
        return [_robot_row(r) for r in rows]

    def robots_reporting(self, ws: str, model_id: str) -> list[RobotRow]:
        """The robots whose heartbeats name the model, sorted by id."""
        return [r for r in self.list_robots(ws) if reports_model(r, model_id)]

    # deployments -----------------------------------------------------------
    def create_deployment(self, ws: str, model_id: str, *, version: str, mode: str,
                          robots: list[str], guard: dict[str, Any],
                          previous_version: str | None) -> DeploymentRow:
        """A new deployment (rolling_out); live deployments of the model that target any
        of the same robots end `cancelled` (superseded)."""
        dep_id = new_id("dep_")
        t = now()
        progress = {r: {"status": "pending"} for r in robots}
        with self.store.tx() as c:
            for old in c.execute(f"SELECT id, robots FROM deployments WHERE model_id=?"
                                 f" AND state IN ({_LIVE_MARKS})", (model_id, *LIVE)).fetchall():
                if set(json.loads(old["robots"])) & set(robots):
                    c.execute("UPDATE deployments SET state='cancelled', reason=?, updated_at=?"
                              " WHERE id=?", (f"superseded by {dep_id}", t, old["id"]))
            c.execute(
                "INSERT INTO deployments (id, workspace_id, model_id, version, previous_version,"
                " mode, robots, guard, state, reason, progress, observing_since, created_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?,'rolling_out',NULL,?,NULL,?,?)",
                (dep_id, ws, model_id, version, previous_version, mode, json.dumps(robots),
                 json.dumps(guard), json.dumps(progress), t, t))
        dep = self.get_deployment(ws, model_id, dep_id)
        assert dep is not None
        return dep

    def get_deployment(self, ws: str, model_id: str, dep_id: str) -> DeploymentRow | None:
        row = self.store.conn.execute(
            "SELECT * FROM deployments WHERE id=? AND model_id=? AND workspace_id=?",
            (dep_id, model_id, ws)).fetchone()
        return _deployment_row(row) if row else None

    def list_deployments(self, ws: str, model_id: str | None = None) -> list[DeploymentRow]:
        """The workspace's deployments (of one model, when given), newest first."""
        rows = self.store.conn.execute(
            "SELECT * FROM deployments WHERE workspace_id=? AND (? IS NULL OR model_id=?)"
            " ORDER BY seq DESC", (ws, model_id, model_id)).fetchall()
        return [_deployment_row(r) for r in rows]

    def end_deployment(self, dep_id: str, state: str, reason: str,
                       only_from: tuple[str, ...] = LIVE) -> bool:
        """Move a deployment to `state` (rolled_back, cancelled, complete) with `reason`,
        only while it is in `only_from`; whether it moved."""
        marks = ",".join("?" * len(only_from))
        with self.store.tx() as c:
            cur = c.execute(f"UPDATE deployments SET state=?, reason=?, updated_at=?"
                            f" WHERE id=? AND state IN ({marks})",
                            (state, reason, now(), dep_id, *only_from))
            return cur.rowcount > 0

    # what a robot serves -----------------------------------------------------
    def pin(self, ws: str, model_id: str, robot_id: str) -> DeploymentRow | None:
        """The live deployment of the model that targets the robot (the newest one)."""
        rows = self.store.conn.execute(
            f"SELECT * FROM deployments WHERE workspace_id=? AND model_id=?"
            f" AND state IN ({_LIVE_MARKS}) ORDER BY seq DESC", (ws, model_id, *LIVE))
        for row in rows:
            dep = _deployment_row(row)
            if robot_id in dep["robots"] \
                    and self._promotion_since(dep) in (None, dep["version"]):
                return dep
        return None

    def assignment(self, ws: str, model: ModelRow, robot_id: str
                   ) -> dict[str, Any] | None:
        """What the robot must serve of the model: its live deployment's version (mode
        active), else the model's active version, with the candidate to shadow (mode
        shadow); None when there is neither a pin nor an active version."""
        dep = self.pin(ws, model["id"], robot_id)
        shadow = None
        version: str | None
        if dep is not None and dep["mode"] == "active":
            version, deployment_id = dep["version"], dep["id"]
        else:
            version, deployment_id = model["active_version"], None
            if dep is not None and dep["version"] != version:  # a promoted shadow: no shadow
                shadow = {"version": dep["version"], "deployment_id": dep["id"],
                          "sha256": self.version_sha256(model["id"], dep["version"])}
        if version is None:
            return None
        return {"model_id": model["id"], "robot_id": robot_id, "version": version,
                "sha256": self.version_sha256(model["id"], version),
                "deployment_id": deployment_id, "shadow": shadow}

    def version_sha256(self, model_id: str, version: str) -> str | None:
        row = self.store.conn.execute("SELECT sha256 FROM runs WHERE model_id=? AND version=?",
                                      (model_id, version)).fetchone()
        return row["sha256"] if row else None

    def _promotion_since(self, dep: DeploymentRow) -> str | None:
        """The version the model's latest promotion after the deployment was made
        activated (a plain promote, or this deployment's own), or None."""
        row = self.store.conn.execute(
            "SELECT to_version FROM promotions WHERE model_id=? AND at>?"
            " ORDER BY id DESC LIMIT 1", (dep["model_id"], dep["created_at"])).fetchone()
        return row["to_version"] if row else None

    # guards ------------------------------------------------------------------
    def evaluate(self, dep_id: str, at: float | None = None) -> DeploymentRow | None:
        """Evaluate one live deployment's guard and store its new state; its row after.

        Decided on a plain read; a write transaction is taken only when something
        changed (then decided again inside it), so that a quiet fleet never holds the
        database's write lock.
        """
        at = now() if at is None else at
        dep, change = self._decide(self.store.conn, dep_id, at)
        if change is None:
            return dep
        with self.store.tx() as c:
            dep, change = self._decide(c, dep_id, at)
            if change is None:
                return dep
            assert dep is not None
            c.execute("UPDATE deployments SET state=?, reason=?, progress=?, observing_since=?,"
                      " updated_at=? WHERE id=?",
                      (change.state, change.reason, json.dumps(change.progress),
                       change.observing_since, at, dep_id))
            if change.state != dep["state"]:
                log.info("deployment %s of %s %s: %s -> %s (%s)", dep_id, dep["model_id"],
                         dep["version"], dep["state"], change.state, change.reason)
            dep["state"], dep["reason"] = change.state, change.reason
            dep["progress"], dep["observing_since"] = change.progress, change.observing_since
            dep["updated_at"] = at
            return dep

    def _decide(self, c: Connection, dep_id: str, at: float
                ) -> tuple[DeploymentRow | None, Verdict | None]:
        """A deployment's row and its columns' new values (None: nothing to change)."""
        row = c.execute("SELECT * FROM deployments WHERE id=?", (dep_id,)).fetchone()
        if row is None:
            return None, None
        dep = _deployment_row(row)
        if dep["state"] not in LIVE:
            return dep, None
        promoted = self._promotion_since(dep)
        if promoted is not None and promoted != dep["version"]:
            return dep, Verdict("cancelled", f"superseded by the promotion of {promoted} to the"
                                " whole fleet", dep["progress"], dep["observing_since"])
        if promoted is not None and dep["state"] in GUARDED:
            return dep, Verdict("complete", f"{promoted} was promoted to the whole fleet",
                                dep["progress"], dep["observing_since"])
        if dep["state"] not in GUARDED:
            return dep, None
        marks = ",".join("?" * len(dep["robots"]))
        robots = {r["id"]: _robot_row(r) for r in c.execute(
            f"SELECT * FROM robots WHERE workspace_id=? AND id IN ({marks})",
            (dep["workspace_id"], *dep["robots"]))}
        verdict = evaluate(dep, robots, at, self.version_sha256(dep["model_id"], dep["version"]))
        if verdict == Verdict(dep["state"], dep["reason"], dep["progress"],
                              dep["observing_since"]):
            return dep, None
        return dep, verdict

    def live_deployment_ids(self, ws: str | None = None, robot_id: str | None = None,
                            model_id: str | None = None) -> list[str]:
        """Ids of the live deployments (of a workspace, targeting a robot, of a model),
        oldest first."""
        rows = self.store.conn.execute(
            f"SELECT id, robots FROM deployments WHERE state IN ({_LIVE_MARKS})"
            f" AND (? IS NULL OR workspace_id=?) AND (? IS NULL OR model_id=?) ORDER BY seq",
            (*LIVE, ws, ws, model_id, model_id)).fetchall()
        return [r["id"] for r in rows
                if robot_id is None or robot_id in json.loads(r["robots"])]

    def settle(self, ws: str, model_id: str) -> None:
        """Evaluate the model's live deployments now (after a promotion: the ones it
        supersedes end at once, not at the next sweep)."""
        for dep_id in self.live_deployment_ids(ws, model_id=model_id):
            self.evaluate(dep_id)

    def widened(self, dep: DeploymentRow) -> bool:
        """Whether the deployment's version was promoted to the whole fleet since it was
        made (its own promote, or a plain promote of its version): nothing left to widen
        or roll back."""
        return dep["state"] == "complete" and self._promotion_since(dep) == dep["version"]

    def sweep(self, at: float | None = None) -> list[DeploymentRow]:
        """Evaluate every live deployment; the ones whose state changed."""
        changed = []
        for dep_id in self.live_deployment_ids():
            before = self.store.conn.execute("SELECT state FROM deployments WHERE id=?",
                                             (dep_id,)).fetchone()
            dep = self.evaluate(dep_id, at)
            if dep is not None and before is not None and dep["state"] != before["state"]:
                changed.append(dep)
        return changed
