"""The dashboard (/ui) in a real browser: Debian's Chromium, headless, driven by
Playwright, against a real backend process training real models.

The screenshots it takes are the README's (docs/screenshots/*.png).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from conftest import Server, cli, wait_run
from kairo_backend.core.security import key_id

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LAPTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}
WAIT_MS = 180_000  # generous: two loaded cores train while the browser waits
ROBOTS = ("rob_ui_1", "rob_ui_2", "rob_ui_3")
ROBOT_ID = "rob_uiarm"  # the robot the trained model is for
EPOCHS = 24  # of the run whose curve the page watches

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("kairo-ui")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ui_key(ui_server: Server) -> str:
    return cli(ui_server.data_dir, "keys", "create", "--workspace", "fleet-ops")


@pytest.fixture(scope="module")
def foreign_key(ui_server: Server) -> str:
    return cli(ui_server.data_dir, "keys", "create", "--workspace", "elsewhere")


@pytest.fixture(scope="module")
def ui_api(ui_server: Server, ui_key: str) -> Iterator[httpx.Client]:
    with ui_server.client(ui_key) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(ui_server: Server, ui_key: str) -> str:
    return cli(ui_server.data_dir, "datasets", "create-demo", "navigation", "--workspace",
               "fleet-ops", "--samples", "2000", "--seed", "3")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def _browser(playwright: Playwright, tmp: Path) -> BrowserContext:
    assert CHROMIUM.is_file(), ("the dashboard's test drives Debian's Chromium: apt-get install "
                                "chromium (make setup does it when run as root)")
    context = playwright.chromium.launch_persistent_context(
        str(tmp), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport=LAPTOP)
    context.set_default_timeout(WAIT_MS)
    return context


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[BrowserContext]:
    context = _browser(playwright, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="module")
def page(browser: BrowserContext) -> Page:
    return browser.pages[0] if browser.pages else browser.new_page()


@pytest.fixture(scope="module")
def requested_urls(page: Page) -> list[str]:
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What the tests of this module learn, in order (model, runs)."""
    return {}


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def train(api: httpx.Client, dataset: str, epochs: int) -> dict[str, Any]:
    r = api.post("/v1/models/train", json={
        "dataset_id": dataset, "robot_id": ROBOT_ID, "task": "navigation",
        "name": "warehouse-nav", "config": {"epochs": epochs, "learning_rate": 0.002}})
    assert r.status_code == 202, r.text
    accepted: dict[str, Any] = r.json()
    return accepted


def heartbeat(api: httpx.Client, robot_id: str, model_id: str, version: str,
              deployment_id: str | None = None) -> None:
    sha = api.get(f"/v1/models/{model_id}").json()
    sha256 = next(v["sha256"] for v in sha["versions"] if v["version"] == version)
    r = api.post(f"/v1/robots/{robot_id}/heartbeat", json={
        "period_s": 60.0, "node": f"/{robot_id}/kairo_inference", "task": "navigation",
        "model_id": model_id,
        "serving": {"model_id": model_id, "version": version, "sha256": sha256,
                    "lifecycle_state": "active", "provider": "CPUExecutionProvider",
                    "deployment_id": deployment_id},
        "health": {"window_s": 10.0, "rate_hz": 20.0, "latency_p50_ms": 0.3,
                   "latency_p99_ms": 0.9, "processed": 200, "dropped": 0, "errors": 0}})
    assert r.status_code == 200, r.text


def test_wrong_key_is_refused_and_never_shown(page: Page, ui_server: Server,
                                              requested_urls: list[str]) -> None:
    page.goto(ui_server.url + "/ui/models")
    expect(page).to_have_url(ui_server.url + "/ui/signin")
    wrong = "kai_live_" + "0" * 32
    page.fill("#api_key", wrong)
    page.click("button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("unknown or revoked")
    assert wrong not in page.content()
    assert page.input_value("#api_key") == ""
    assert not any(wrong in url for url in requested_urls)
    shot(page, "signin")


def test_sign_in_holds_only_a_session_cookie_and_a_model_appears(
        page: Page, browser: BrowserContext, ui_server: Server, ui_key: str,
        ui_api: httpx.Client, dataset: str, state: dict[str, Any],
        requested_urls: list[str]) -> None:
    page.fill("#api_key", ui_key)
    page.click("button[type=submit]")
    expect(page).to_have_url(ui_server.url + "/ui/models")
    expect(page.locator("#workspace")).to_have_text("fleet-ops")
    expect(page.locator("#no-models")).to_be_visible()

    cookies = browser.cookies()
    assert [c["name"] for c in cookies] == ["kairo_ui_session"]
    session = cookies[0]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["path"] == "/ui" and not session["secure"]  # plain http on loopback
    assert ui_key not in session["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
    assert ui_key not in page.content()
    assert not any(ui_key in url for url in requested_urls)

    first = train(ui_api, dataset, epochs=8)
    state["model_id"], state["v1_run"] = first["model_id"], first["run_id"]
    page.reload()
    row = page.locator(f"tr[data-model-id='{first['model_id']}']")
    expect(row).to_contain_text("warehouse-nav")
    expect(row).to_contain_text(ROBOT_ID)
    expect(row).to_contain_text("navigation")


def test_run_curve_gains_points_live(page: Page, ui_server: Server, ui_api: httpx.Client,
                                     dataset: str, state: dict[str, Any]) -> None:
    second = train(ui_api, dataset, epochs=EPOCHS)  # queued behind v1: the page sees it start
    assert second["model_id"] == state["model_id"]
    state["v2_run"] = second["run_id"]
    page.goto(f"{ui_server.url}/ui/models/{state['model_id']}/runs/{second['run_id']}")
    expect(page.locator("#curve-stream")).to_have_count(1)  # queued or running: live
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    shown = int(page.get_attribute("#curve", "data-points") or 0)
    assert shown < EPOCHS - 2, "the run finished before the page could watch it"
    # points arrive over server-sent events, into this same document
    page.wait_for_function(
        "n => window.sameDocument === true && "
        "Number(document.getElementById('curve').dataset.points) >= n + 2 && "
        "document.getElementById('run-status').textContent.includes('running')", arg=shown)
    expect(page.locator("#curve polyline[data-series=loss]")).to_have_count(1)
    expect(page.locator("#curve polyline[data-series=val_loss]")).to_have_count(1)
    # once complete, the page shows its metrics and logs (it reloads itself)
    expect(page.locator("#metrics")).to_be_visible()
    expect(page.locator("#run-status")).to_contain_text("complete")
    expect(page.locator("#curve")).to_have_attribute("data-points", str(EPOCHS))
    expect(page.locator("#logs")).to_contain_text(f"epoch {EPOCHS}/{EPOCHS}")
    run = ui_api.get(f"/v1/models/{state['model_id']}/runs/{second['run_id']}").json()
    assert run["status"] == "complete" and run["metrics"]["epochs_run"] == EPOCHS
    shot(page, "run")


def test_promote_from_the_page_reaches_the_api(page: Page, ui_server: Server,
                                                ui_api: httpx.Client,
                                                state: dict[str, Any]) -> None:
    model_id = state["model_id"]
    assert wait_run(ui_api, model_id, state["v1_run"])["status"] == "complete"
    page.goto(f"{ui_server.url}/ui/models/{model_id}")
    page.locator("tr[data-version=v1]").get_by_role("link", name="Promote…").click()
    expect(page.locator("#question")).to_contain_text("Make v1 the active version")
    assert ui_api.get(f"/v1/models/{model_id}").json()["active_version"] is None  # not yet
    page.click("#confirm")
    expect(page.locator("#notice")).to_contain_text("v1 is now the active version")
    model = ui_api.get(f"/v1/models/{model_id}").json()
    assert model["active_version"] == "v1"
    assert [(p["from"], p["to"]) for p in model["promotions"]] == [(None, "v1")]
    expect(page.locator("#active-version")).to_have_text("v1")

    # the export's signed link (the API's own), downloaded: the bytes the API recorded
    page.locator("tr[data-version=v1]").get_by_role("button", name="Export ONNX").click()
    link = page.get_attribute("#download", "href") or ""
    assert "/downloads/" in link and "sig=" in link
    onnx = httpx.get(link, timeout=30)
    assert onnx.status_code == 200
    v1 = next(v for v in model["versions"] if v["version"] == "v1")
    assert hashlib.sha256(onnx.content).hexdigest() == v1["sha256"]


def test_fleet_shows_robots_and_a_canary_widens_from_the_page(
        page: Page, ui_server: Server, ui_api: httpx.Client, state: dict[str, Any]) -> None:
    model_id = state["model_id"]
    for robot in ROBOTS:
        heartbeat(ui_api, robot, model_id, "v1")
    page.goto(f"{ui_server.url}/ui/models/{model_id}")
    page.locator("tr[data-version=v2]").get_by_role("link", name="Canary…").click()
    page.check("input[name=robots][value=rob_ui_1]")
    page.fill("#min_observation_s", "0")
    page.click("#confirm")
    expect(page.locator("#notice")).to_contain_text("deployment of v2 has started")
    deployments = ui_api.get(f"/v1/models/{model_id}/deployments").json()["data"]
    assert [(d["version"], d["mode"], d["robots"]) for d in deployments] == \
        [("v2", "active", ["rob_ui_1"])]
    dep_id = deployments[0]["id"]
    heartbeat(ui_api, "rob_ui_1", model_id, "v2", dep_id)  # the canary robot switched

    page.goto(f"{ui_server.url}/ui/fleet")
    rows = page.locator("#robots tbody tr")
    expect(rows).to_have_count(3)
    for robot, version in zip(ROBOTS, ("v2", "v1", "v1"), strict=True):
        row = page.locator(f"tr[data-robot-id={robot}]")
        expect(row.locator(".served-version")).to_have_text(version)
        expect(row).to_contain_text("online")
        expect(row).to_contain_text("20.0 Hz")
    shot(page, "fleet")

    page.goto(f"{ui_server.url}/ui/models/{model_id}")
    progress = page.locator(f"[data-deployment-id={dep_id}] tr[data-robot-id=rob_ui_1]")
    expect(progress).to_contain_text("serving")
    shot(page, "model")
    page.locator(f"[data-deployment-id={dep_id}]").get_by_role(
        "link", name="Widen to all…").click()
    expect(page.locator("#question")).to_contain_text("whole fleet")
    page.click("#confirm")
    expect(page.locator("#notice")).to_contain_text("widened")
    assert ui_api.get(f"/v1/models/{model_id}").json()["active_version"] == "v2"
    assert ui_api.get(f"/v1/models/{model_id}/deployments/{dep_id}").json()["state"] == \
        "complete"
    page.goto(f"{ui_server.url}/ui/models/{model_id}")
    widened = page.locator(f"[data-deployment-id={dep_id}]")
    expect(widened).to_contain_text("Widened: v2 is the active version of the whole fleet")
    expect(widened.get_by_role("link", name="Roll back…")).to_have_count(0)

    # v1 in shadow beside v2 on one robot, then rolled back, both from the page
    page.locator("tr[data-version=v1]").get_by_role("link", name="Shadow…").click()
    expect(page.locator("#question")).to_contain_text("in shadow beside the active version v2")
    page.check("input[name=robots][value=rob_ui_2]")
    page.fill("#max_divergence", "0.5")
    page.click("#confirm")
    expect(page.locator("#notice")).to_contain_text("deployment of v1 has started")
    shadow = ui_api.get(f"/v1/models/{model_id}/deployments").json()["data"][0]
    assert (shadow["version"], shadow["mode"], shadow["robots"]) == ("v1", "shadow",
                                                                     ["rob_ui_2"])
    assert shadow["guard"]["max_divergence"] == 0.5 and shadow["state"] == "rolling_out"
    page.locator(f"[data-deployment-id={shadow['id']}]").get_by_role(
        "link", name="Roll back…").click()
    page.click("#confirm")
    expect(page.locator("#notice")).to_contain_text("deployment of v1 was rolled back")
    shadow = ui_api.get(f"/v1/models/{model_id}/deployments/{shadow['id']}").json()
    assert shadow["state"] == "rolled_back"
    assert shadow["reason"] == "rolled back by the operator"


def test_cross_site_posts_are_refused(page: Page, browser: BrowserContext, ui_server: Server,
                                      ui_api: httpx.Client, state: dict[str, Any]) -> None:
    model_id = state["model_id"]
    target = f"{ui_server.url}/ui/models/{model_id}/promote"
    # another site's page that posts the form in the signed-in browser
    attack = (f"<form id=f method=post action='{target}'><input name=version value=v1>"
              "<input name=csrf_token value=guessed></form>"
              "<script>document.getElementById('f').submit()</script>").encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the handler's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(attack)))
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args: Any) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with page.expect_response(target) as answer:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert answer.value.status == 403
        expect(page.locator("#error-message")).to_contain_text("Refused")
    finally:
        evil.shutdown()
        evil.server_close()
    assert ui_api.get(f"/v1/models/{model_id}").json()["active_version"] == "v2"

    # the session cookie alone (no Origin, a foreign one, no or a wrong token): 403
    token = next(c["value"] for c in browser.cookies() if c["name"] == "kairo_ui_session")
    page.goto(f"{ui_server.url}/ui/models/{model_id}")
    csrf = page.get_attribute("input[name=csrf_token]", "value")
    with httpx.Client(base_url=ui_server.url, cookies={"kairo_ui_session": token},
                      timeout=30) as c:
        for headers, fields in (({}, {"version": "v1", "csrf_token": csrf}),
                                ({"Origin": "http://evil.example"},
                                 {"version": "v1", "csrf_token": csrf}),
                                ({"Origin": ui_server.url}, {"version": "v1"}),
                                ({"Origin": ui_server.url},
                                 {"version": "v1", "csrf_token": "x" + (csrf or "")})):
            r = c.post(f"/ui/models/{model_id}/promote", headers=headers, data=fields)
            assert r.status_code == 403, (headers, fields, r.text)
        assert ui_api.get(f"/v1/models/{model_id}").json()["active_version"] == "v2"
        # the same request with its Origin and token goes through (the checks are the gate)
        r = c.post(f"/ui/models/{model_id}/promote", headers={"Origin": ui_server.url},
                   data={"version": "v1", "csrf_token": csrf})
        assert r.status_code == 303
    assert ui_api.get(f"/v1/models/{model_id}").json()["active_version"] == "v1"


def test_datasets_and_models_pages(page: Page, ui_server: Server, dataset: str,
                                   state: dict[str, Any]) -> None:
    page.goto(f"{ui_server.url}/ui/datasets")
    row = page.locator(f"tr[data-dataset-id={dataset}]")
    expect(row).to_contain_text("demo")
    expect(row).to_contain_text("2000")
    shot(page, "datasets")
    page.goto(f"{ui_server.url}/ui/models")
    row = page.locator(f"tr[data-model-id={state['model_id']}]")
    expect(row.locator(".version")).to_have_text("v1")
    expect(row).to_contain_text("active")
    shot(page, "models")
    page.set_viewport_size(TABLET)
    page.reload()
    expect(row).to_be_visible()
    shot(page, "models-tablet")
    page.set_viewport_size(LAPTOP)


def test_a_workspace_sees_only_its_own(playwright: Playwright, ui_server: Server,
                                       foreign_key: str, state: dict[str, Any],
                                       tmp_path: Path) -> None:
    context = _browser(playwright, tmp_path / "profile")
    try:
        other = context.pages[0] if context.pages else context.new_page()
        other.goto(ui_server.url + "/ui/signin")
        other.fill("#api_key", foreign_key)
        other.click("button[type=submit]")
        expect(other.locator("#workspace")).to_have_text("elsewhere")
        expect(other.locator("#no-models")).to_be_visible()
        answer = other.goto(f"{ui_server.url}/ui/models/{state['model_id']}")
        assert answer is not None and answer.status == 404
        other.goto(f"{ui_server.url}/ui/fleet")
        expect(other.locator("#no-robots")).to_be_visible()
        # revoking the key it signed in with ends the session
        cli(ui_server.data_dir, "keys", "revoke", key_id(foreign_key))
        other.goto(f"{ui_server.url}/ui/models")
        expect(other).to_have_url(ui_server.url + "/ui/signin")
    finally:
        context.close()


def test_cancel_a_run_and_delete_the_model_from_the_page(
        page: Page, ui_server: Server, ui_api: httpx.Client, dataset: str,
        state: dict[str, Any]) -> None:
    model_id = state["model_id"]
    third = train(ui_api, dataset, epochs=1000)
    page.goto(f"{ui_server.url}/ui/models/{model_id}/runs/{third['run_id']}")
    page.get_by_role("link", name="Cancel…").click()
    expect(page.locator("#question")).to_contain_text(third["run_id"])
    page.click("#confirm")
    expect(page.locator("#notice")).to_contain_text("The run of v3 was cancelled")
    run = ui_api.get(f"/v1/models/{model_id}/runs/{third['run_id']}").json()
    assert run["status"] == "cancelled"

    page.get_by_role("link", name="Delete this model…").click()
    expect(page.locator("#question")).to_contain_text("cannot be undone")
    assert ui_api.get(f"/v1/models/{model_id}").status_code == 200  # not before the confirm
    page.click("#confirm")
    expect(page).to_have_url(ui_server.url + "/ui/models")
    expect(page.locator("#no-models")).to_be_visible()
    assert ui_api.get(f"/v1/models/{model_id}").status_code == 404


def test_sign_out_ends_the_session(page: Page, browser: BrowserContext,
                                   ui_server: Server) -> None:
    token = next(c["value"] for c in browser.cookies() if c["name"] == "kairo_ui_session")
    page.goto(ui_server.url + "/ui/models")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(ui_server.url + "/ui/signin")
    r = httpx.get(ui_server.url + "/ui/models", cookies={"kairo_ui_session": token},
                  follow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["location"].endswith("/ui/signin")
