"""The fleet as the dashboard shows it: robots as they last reported, deployments."""

from __future__ import annotations

from typing import Any

from kairo_backend.core.util import now
from kairo_backend.deps import Context
from kairo_backend.schemas.fleet import deployment_public, robot_public
from kairo_backend.store.fleet import FleetStore


def deployments(ctx: Context, ws: str, model_id: str) -> list[dict[str, Any]]:
    """The model's deployments, newest first, as the API shows them."""
    return [deployment_public(d) for d in FleetStore(ctx.store).list_deployments(ws, model_id)]


def robots(ctx: Context, ws: str) -> list[dict[str, Any]]:
    """The workspace's robots as the API shows them, with `last_seen_ts` (unix) and
    `model_name` (the name of the model it serves) for the page."""
    at = now()
    names = {m["id"]: m["name"] for m in ctx.store.list_models(ws)}
    out = []
    for row in FleetStore(ctx.store).list_robots(ws):
        shown = robot_public(row, at)
        serving = shown["serving"] or {}
        shown["last_seen_ts"] = row["last_seen"]
        shown["model_name"] = names.get(serving.get("model_id") or shown["model_id"])
        out.append(shown)
    return out


def robot_ids(ctx: Context, ws: str) -> list[str]:
    return [r["id"] for r in FleetStore(ctx.store).list_robots(ws)]
