"""Turning a template and its values into the page's response."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from kairo_backend.core.util import iso

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# Nothing but the backend itself: no inline script, no frame, forms only back here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def ago(ts: float | None) -> str:
    """'3 min ago', for a unix time; '—' for none."""
    if ts is None:
        return "—"
    s = max(0.0, time.time() - ts)
    if s < 60:
        return f"{int(s)} s ago"
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 86400:
        return f"{int(s // 3600)} h ago"
    return f"{int(s // 86400)} d ago"


def number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def percent(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f} %"


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)
_env.filters.update(iso=iso, ago=ago, number=number, percent=percent)


def fragment(template: str, **values: Any) -> str:
    """A template's HTML, to be placed in a page."""
    return _env.get_template(template).render(**values)


def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("nav", "")
    html = _env.get_template(template).render(**values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
