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
    spec = client.get("/openapi.json").json()
    assert "/v1/models/train" in spec["paths"]
    # The key is declared, so /docs offers "Authorize": on every /v1 route, on no public one.
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["apiKey"]
        ["description"]}
    assert "kai_live_" in spec["components"]["securitySchemes"]["apiKey"]["description"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            secured = operation.get("security") == [{"apiKey": []}]
            assert secured == path.startswith("/v1/"), (method, path)
