"""The fleet as the dashboard shows it (robots and deployments)."""

from __future__ import annotations

from typing import Any

from kairo_backend.deps import Context


def deployments(ctx: Context, ws: str, model_id: str) -> list[dict[str, Any]]:
    return []
