"""IDs and timestamps."""

from __future__ import annotations

import secrets
import string
import time
from datetime import datetime, timezone

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str, length: int = 12) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def iso(ts: float | None) -> str | None:
    """Unix time -> ISO 8601 UTC with a Z, second precision (as the seed shows)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> float:
    return time.time()
