"""Generated API tests against a live server (schemathesis: coverage, fuzzing and
stateful phases): no 5xx, and every status code, content type and body is one the
OpenAPI schema declares."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ENGINES, Server, cli, engine_data_dir

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")
MIN_CASES = 1000
# per operation and phase; one worker: CPython 3.11 can fail parsing (ast) in two
# threads at once, which schemathesis does while generating (about 1,500 cases)
MAX_EXAMPLES = 80


@pytest.fixture(scope="module", params=ENGINES)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Server, str]]:
    """A server holding a key and a small dataset in workspace `fuzz` (once per engine)."""
    data_dir = engine_data_dir(request, tmp_path_factory, "schemathesis", request.param)
    srv = Server(data_dir, ["--max-upload-mb", "2"]).start()
    try:
        key = cli(srv.data_dir, "keys", "create", "--workspace", "fuzz")
        cli(srv.data_dir, "datasets", "create-demo", "navigation", "--workspace", "fuzz",
            "--samples", "200")
        yield srv, key
    finally:
        srv.stop()


def test_generated_requests_find_no_failure(live: tuple[Server, str], tmp_path: Path) -> None:
    srv, key = live
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{srv.url}/openapi.json",
           "--phases", "coverage,fuzzing,stateful", "--checks", CHECKS,
           "--header", f"Authorization: Bearer {key}", "--max-examples", str(MAX_EXAMPLES),
           "--seed", "1", "--workers", "1", "--request-timeout", "60",
           "--generation-database", "none", "--warnings", "off", "--no-color",
           "--report", "json", "--report-json-path", str(report)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    log = out.stdout[-12000:] + out.stderr[-4000:]
    assert report.is_file(), log
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {cases['with_failures']} with failures, "
          f"{len(summary['errors'])} errors; phases {summary['phases']}")
    assert out.returncode == 0 and not summary["failures"] and not summary["errors"], log
    assert cases["with_failures"] == 0 and cases["errored"] == 0, log
    for phase in ("coverage", "fuzzing", "stateful"):
        assert summary["phases"][phase]["status"] == "success", (phase, log)
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 14, log
    assert cases["generated"] >= MIN_CASES, log
