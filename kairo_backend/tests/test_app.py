"""The app in-process (no server): error mapping for what the API must never leak."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from kairo_backend.core.config import Settings
from kairo_backend.main import create_app


def test_unexpected_errors_are_500_without_traceback(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals at /srv/x.py line 3")

    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal",
                                  "message": "internal server error; see the backend's log"}}
    r = client.put("/health")
    assert r.status_code == 405 and r.json()["error"]["code"] == "invalid_request"
    assert client.get("/docs").status_code == 200
    assert "/v1/models/train" in client.get("/openapi.json").json()["paths"]
