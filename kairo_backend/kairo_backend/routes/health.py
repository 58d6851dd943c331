from __future__ import annotations

from fastapi import APIRouter

from kairo_backend.schemas.common import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> dict[str, str]:
    """Liveness; needs no key."""
    return {"status": "ok"}
