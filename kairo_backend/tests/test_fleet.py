"""Fleet rollout against the real server: robots' heartbeats, canary / percent / all and
shadow deployments, their guards rolling back by themselves, promote, isolation.

The robots here are this test sending heartbeats over HTTP as inference nodes do;
their ids (rob_fleet_*) are this module's own. Tests run in file order: the promote
and delete tests, which change the model for everyone, come last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import Server, cli, store_of, wait_run

DEADLINE_S = 60.0  # generous: the guard's time plus a few sweeps, on a loaded machine
GOOD_HEALTH = {"window_s": 10.0, "rate_hz": 10.0, "latency_p50_ms": 0.4,
               "latency_p99_ms": 1.2, "processed": 100, "dropped": 0, "errors": 0}
# short guards so that the tests take seconds
GUARD = {"max_error_rate": 0.05, "max_drop_rate": 0.1, "max_divergence": 0.2,
         "min_observation_s": 1.0, "report_within_s": 30.0}


@pytest.fixture(scope="module")
def fleet_model(server: Server, api: httpx.Client) -> dict[str, Any]:
    """A navigation model with complete versions v1 (active) and v2."""
    ds = cli(server.data_dir, "datasets", "create-demo", "navigation", "--workspace", "acme",
             "--samples", "300", "--seed", "3")
    model_id = ""
    for _ in range(2):
        r = api.post("/v1/models/train", json={
            "dataset_id": ds, "robot_id": "rob_fleet_model", "task": "navigation",
            "name": "fleet-model", "config": {"epochs": 2}})
        assert r.status_code == 202, r.text
        model_id = r.json()["model_id"]
        run = wait_run(api, model_id, r.json()["run_id"])
        assert run["status"] == "complete", run
    assert api.post(f"/v1/models/{model_id}/promote", json={"version": "v1"}).status_code == 200
    model = api.get(f"/v1/models/{model_id}").json()
    SHA256.update({(model_id, v["version"]): v["sha256"] for v in model["versions"]})
    return {"id": model_id, "sha": {v["version"]: v["sha256"] for v in model["versions"]}}


# (model id, version) -> the version's sha256, which the robots here report as real ones do
SHA256: dict[tuple[str, str], str] = {}


def beat(api: httpx.Client, robot: str, model_id: str, version: str | None, *,
         health: dict[str, Any] | None = None, shadow: dict[str, Any] | None = None,
         refused: list[dict[str, Any]] | None = None, period_s: float = 1.0,
         sha256: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"period_s": period_s, "node": f"/{robot}/kairo_inference",
                            "task": "navigation", "model_id": model_id,
                            "health": health or GOOD_HEALTH, "refused": refused or [],
                            "shadow": shadow}
    if version is not None:
        body["serving"] = {"model_id": model_id, "version": version,
                           "sha256": sha256 or SHA256.get((model_id, version)),
                           "lifecycle_state": "active", "provider": "CPUExecutionProvider"}
    r = api.post(f"/v1/robots/{robot}/heartbeat", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def shadow_report(model_id: str, version: str, *, divergence: float = 0.01, samples: int = 50,
                  errors: int = 0) -> dict[str, Any]:
    return {"model_id": model_id, "version": version, "sha256": SHA256.get((model_id, version)),
            "samples": samples,
            "errors": errors, "latency_p50_ms": 0.5, "latency_p99_ms": 1.0,
            "outputs": {"cmd_vel": {"mean_abs_diff": divergence,
                                    "max_abs_diff": divergence * 3, "within_tolerance": 0.9}},
            "divergence": divergence}


def deploy(api: httpx.Client, model_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("guard", GUARD)
    r = api.post(f"/v1/models/{model_id}/deployments", json=body)
    assert r.status_code == 201, r.text
    dep: dict[str, Any] = r.json()
    return dep


def wait_deployment(api: httpx.Client, model_id: str, dep_id: str,
                    done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        dep: dict[str, Any] = api.get(f"/v1/models/{model_id}/deployments/{dep_id}").json()
        if done(dep) or time.monotonic() > deadline:
            return dep
        time.sleep(0.2)


def assignment(api: httpx.Client, model_id: str, robot: str) -> dict[str, Any]:
    r = api.get(f"/v1/models/{model_id}/assignment", params={"robot_id": robot})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def error_of(r: httpx.Response) -> tuple[int, str, str]:
    err = r.json()["error"]
    return r.status_code, err["code"], err["message"]


def test_heartbeats_register_robots(api: httpx.Client, fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    # A long period, as for rob_fleet_2: still online when read back, however long a loaded machine stalls.
    answer = beat(api, "rob_fleet_1", mid, "v1", period_s=30.0)
    assert answer == {"model_id": mid, "robot_id": "rob_fleet_1", "version": "v1",
                      "sha256": fleet_model["sha"]["v1"], "deployment_id": None, "shadow": None}
    none = api.post("/v1/robots/rob_fleet_2/heartbeat", json={"period_s": 30.0}).json()
    assert none == {"robot_id": "rob_fleet_2", "assignment": None, "reason": None}
    unknown = api.post("/v1/robots/rob_fleet_2/heartbeat",
                       json={"period_s": 30.0, "model_id": "mdl_nothere"}).json()
    assert unknown["assignment"] is None and "mdl_nothere" in unknown["reason"]
    robot = api.get("/v1/robots/rob_fleet_1").json()
    assert robot["status"] == "online" and robot["serving"]["version"] == "v1"
    assert robot["health"] == GOOD_HEALTH and robot["node"] == "/rob_fleet_1/kairo_inference"
    assert robot["model_id"] == mid and robot["period_s"] == 30.0
    assert robot["first_seen"] <= robot["last_seen"]
    fleet = api.get("/v1/robots").json()
    ids = [r["id"] for r in fleet["data"]]
    assert {"rob_fleet_1", "rob_fleet_2"} <= set(ids) and ids == sorted(ids)
    assert fleet["total"] == len(fleet["data"])
    # a robot silent for more than 3 periods is stale, beyond 10 offline
    beat(api, "rob_fleet_3", mid, "v1", period_s=0.2)
    deadline = time.monotonic() + DEADLINE_S
    seen = set()
    while time.monotonic() < deadline and "offline" not in seen:
        seen.add(api.get("/v1/robots/rob_fleet_3").json()["status"])
        time.sleep(0.1)
    assert "offline" in seen and api.get("/v1/robots/rob_fleet_2").json()["status"] == "online"


def test_canary_pins_only_its_robot(api: httpx.Client, fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    beat(api, "rob_fleet_a", mid, "v1")
    beat(api, "rob_fleet_b", mid, "v1")
    dep = deploy(api, mid, version="v2", robots=["rob_fleet_a"])
    assert dep["id"].startswith("dep_") and dep["state"] == "rolling_out"
    assert dep["previous_version"] == "v1" and dep["mode"] == "active"
    assert dep["robots"] == ["rob_fleet_a"] and dep["guard"] == GUARD
    assert [p["status"] for p in dep["progress"]] == ["pending"]
    a = assignment(api, mid, "rob_fleet_a")
    assert (a["version"], a["deployment_id"], a["sha256"]) == ("v2", dep["id"],
                                                               fleet_model["sha"]["v2"])
    b = assignment(api, mid, "rob_fleet_b")
    assert (b["version"], b["deployment_id"]) == ("v1", None)
    # the robot loads v2 and reports it: observing, then complete after min_observation_s
    assert beat(api, "rob_fleet_a", mid, "v2")["version"] == "v2"
    seen = {api.get(f"/v1/models/{mid}/deployments/{dep['id']}").json()["state"]}
    deadline = time.monotonic() + DEADLINE_S
    while "complete" not in seen and time.monotonic() < deadline:
        beat(api, "rob_fleet_a", mid, "v2")
        seen.add(api.get(f"/v1/models/{mid}/deployments/{dep['id']}").json()["state"])
        time.sleep(0.2)
    assert seen <= {"observing", "complete"} and "complete" in seen, seen
    done = api.get(f"/v1/models/{mid}/deployments/{dep['id']}").json()
    assert done["progress"][0]["status"] == "serving" and done["progress"][0]["version"] == "v2"
    assert "within the guard" in done["reason"]
    assert assignment(api, mid, "rob_fleet_a")["version"] == "v2"  # the pin stays
    assert api.get("/v1/robots/rob_fleet_a").json()["serving"]["version"] == "v2"
    listed = api.get(f"/v1/models/{mid}/deployments").json()
    assert listed["total"] == len(listed["data"]) and listed["data"][0]["id"] == dep["id"]
    assert api.get(f"/v1/models/{mid}").json()["active_version"] == "v1"


def test_shadow_assignment_and_progress(api: httpx.Client,
                                        fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    beat(api, "rob_fleet_s1", mid, "v1")
    dep = deploy(api, mid, version="v2", mode="shadow", robots=["rob_fleet_s1"])
    a = assignment(api, mid, "rob_fleet_s1")
    assert (a["version"], a["deployment_id"]) == ("v1", None)
    assert a["shadow"] == {"version": "v2", "sha256": fleet_model["sha"]["v2"],
                           "deployment_id": dep["id"]}
    beat(api, "rob_fleet_s1", mid, "v1", shadow=shadow_report(mid, "v2"))
    done = wait_deployment(api, mid, dep["id"], lambda d: d["state"] != "rolling_out")
    assert done["state"] in ("observing", "complete"), done
    assert done["progress"][0]["status"] == "shadowing"
    assert done["progress"][0]["shadow"]["divergence"] == 0.01
    assert done["progress"][0]["version"] == "v1"


ROLLBACKS = {
    "error_rate": ({"health": {**GOOD_HEALTH, "processed": 80, "errors": 20}}, "active",
                   "max_error_rate"),
    "drop_rate": ({"health": {**GOOD_HEALTH, "processed": 50, "dropped": 50}}, "active",
                  "max_drop_rate"),
    "divergence": ({"shadow": "diverging"}, "shadow", "max_divergence"),
    "shadow_errors": ({"shadow": "failing"}, "shadow", "max_error_rate"),
    "refused_at_load": ({"refused": True}, "active", "refused v2 at load"),
    "other_file": ({"sha256": "0" * 64}, "active", "serves v2 from a file with sha256 000000000000…"),
}


@pytest.mark.parametrize("cause", list(ROLLBACKS))
def test_guard_rolls_back_by_itself(api: httpx.Client, fleet_model: dict[str, Any],
                                    cause: str) -> None:
    mid = fleet_model["id"]
    robot = f"rob_fleet_rb_{cause}"
    report, mode, words = ROLLBACKS[cause]
    beat(api, robot, mid, "v1")
    dep = deploy(api, mid, version="v2", mode=mode, robots=[robot])
    kwargs: dict[str, Any] = {}
    version = "v2" if mode == "active" else "v1"
    if "health" in report:
        kwargs["health"] = report["health"]
    if report.get("shadow") == "diverging":
        kwargs["shadow"] = shadow_report(mid, "v2", divergence=0.9)
    if report.get("shadow") == "failing":  # non-finite outputs: errors on every sample
        kwargs["shadow"] = shadow_report(mid, "v2", samples=40, errors=40)
    if "sha256" in report:
        kwargs["sha256"] = report["sha256"]
    if report.get("refused"):
        version = "v1"  # the node kept v1 serving
        kwargs["refused"] = [{"model_id": mid, "version": "v2", "code": "sha256_mismatch",
                              "message": "the downloaded file's sha256 differs"}]
    answer = beat(api, robot, mid, version, **kwargs)
    # the heartbeat evaluated the guard: the answer already sends the robot back to v1
    assert (answer["version"], answer["deployment_id"], answer["shadow"]) == ("v1", None, None)
    done = api.get(f"/v1/models/{mid}/deployments/{dep['id']}").json()
    assert done["state"] == "rolled_back", done
    assert robot in done["reason"] and words in done["reason"], done["reason"]
    assert done["progress"][0]["status"] == "failed" and words in done["progress"][0]["reason"]
    assert assignment(api, mid, robot)["version"] == "v1"


def test_silent_robot_fails_its_deployment(api: httpx.Client,
                                           fleet_model: dict[str, Any]) -> None:
    """No heartbeat after the deployment: the server's sweep rolls it back."""
    mid = fleet_model["id"]
    beat(api, "rob_fleet_silent", mid, "v1")
    dep = deploy(api, mid, version="v2", robots=["rob_fleet_silent"],
                 guard={**GUARD, "report_within_s": 1.0})
    done = wait_deployment(api, mid, dep["id"], lambda d: d["state"] != "rolling_out")
    assert done["state"] == "rolled_back", done
    assert "rob_fleet_silent never reported v2" in done["reason"]
    assert "report_within_s 1 s" in done["reason"]
    assert assignment(api, mid, "rob_fleet_silent")["version"] == "v1"


def test_newer_deployment_supersedes(api: httpx.Client, fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    for r in ("rob_fleet_sup1", "rob_fleet_sup2"):
        beat(api, r, mid, "v1")
    first = deploy(api, mid, version="v2", robots=["rob_fleet_sup1"])
    second = deploy(api, mid, version="v2", mode="shadow",
                    robots=["rob_fleet_sup1", "rob_fleet_sup2"])
    old = api.get(f"/v1/models/{mid}/deployments/{first['id']}").json()
    assert old["state"] == "cancelled" and old["reason"] == f"superseded by {second['id']}"
    a = assignment(api, mid, "rob_fleet_sup1")
    assert a["version"] == "v1" and a["shadow"]["deployment_id"] == second["id"]
    rolled = api.post(f"/v1/models/{mid}/deployments/{second['id']}/rollback")
    assert rolled.status_code == 200 and rolled.json()["state"] == "rolled_back"
    assert rolled.json()["reason"] == "rolled back by the operator"
    assert assignment(api, mid, "rob_fleet_sup1")["shadow"] is None
    again = api.post(f"/v1/models/{mid}/deployments/{second['id']}/rollback")
    assert error_of(again)[:2] == (409, "conflict") and "already rolled_back" in again.text
    promoted = api.post(f"/v1/models/{mid}/deployments/{first['id']}/promote")
    assert error_of(promoted)[:2] == (409, "conflict")


def test_bad_inputs_are_refused_clearly(api: httpx.Client,
                                        fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    url = f"/v1/models/{mid}/deployments"
    beat(api, "rob_fleet_bad", mid, "v1")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"version": "v99", "robots": ["rob_fleet_bad"]}, 404, "version 'v99' not found"),
        ({"version": "v2", "robots": ["rob_fleet_nobody"]}, 422,
         "rob_fleet_nobody has never sent a heartbeat"),
        ({"version": "v2", "robots": ["rob_fleet_bad", "rob_fleet_bad"]}, 422, "listed twice"),
        ({"version": "v2", "robots": ["robot 1"]}, 422, "robots.0"),
        ({"version": "v2", "percent": 101}, 422, "percent"),
        ({"version": "v2", "percent": -5}, 422, "percent"),
        ({"version": "v2", "percent": 0}, 422, "percent"),
        ({"version": "v2", "robots": ["rob_fleet_bad"], "percent": 50}, 422,
         "body: give robots or percent, not both"),  # no "Value error, " before it
        ({"version": "v2", "robots": ["rob_fleet_bad"], "guard": {"max_error_rate": -0.1}},
         422, "guard.max_error_rate"),
        ({"version": "v2", "robots": ["rob_fleet_bad"], "guard": {"max_divergence": -1}},
         422, "guard.max_divergence"),
        ({"version": "v2", "robots": ["rob_fleet_bad"], "guard": {"report_within_s": 0}},
         422, "guard.report_within_s"),
        ({"version": "v2", "mode": "canary"}, 422, "mode"),
        ({"version": "v1", "mode": "shadow", "robots": ["rob_fleet_bad"]}, 409,
         "is the model's active version"),
        ({"version": "v2", "robots": ["rob_fleet_bad"], "surprise": 1}, 422, "surprise"),
    ]
    for body, status, words in cases:
        r = api.post(url, json=body)
        assert r.status_code == status and words in r.json()["error"]["message"], (body, r.text)
    assert error_of(api.post("/v1/models/mdl_nothere/deployments", json={"version": "v2"}))[0] \
        == 404
    assert error_of(api.get(f"{url}/dep_nothere"))[:2] == (404, "not_found")
    assert error_of(api.get(f"/v1/models/{mid}/assignment",
                            params={"robot_id": "nope"}))[0] == 422
    assert error_of(api.get("/v1/models/mdl_nothere/assignment",
                            params={"robot_id": "rob_fleet_bad"}))[0] == 404
    assert error_of(api.get("/v1/robots/rob_fleet_nobody"))[:2] == (404, "not_found")
    for body in ({}, {"period_s": 0}, {"period_s": 1, "health": {"processed": -1}},
                 {"period_s": 1, "serving": {"model_id": mid, "version": "2"}},
                 {"period_s": 1, "extra": True}):
        r = api.post("/v1/robots/rob_fleet_bad/heartbeat", json=body)
        assert error_of(r)[:2] == (422, "validation_error"), (body, r.text)
    r = api.post("/v1/robots/not_a_robot/heartbeat", json={"period_s": 1})
    assert error_of(r)[:2] == (422, "validation_error") and "robot_id" in r.text
    # the robot that sent bad heartbeats still shows its last good one
    assert api.get("/v1/robots/rob_fleet_bad").json()["serving"]["version"] == "v1"


def test_workspaces_are_isolated(server: Server, api: httpx.Client, other_key: str,
                                 fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    beat(api, "rob_fleet_iso", mid, "v1")
    dep = deploy(api, mid, version="v2", robots=["rob_fleet_iso"])
    with server.client(other_key) as other:
        assert all(not r["id"].startswith("rob_fleet_") for r in
                   other.get("/v1/robots").json()["data"])
        assert other.get("/v1/robots/rob_fleet_iso").status_code == 404
        assert other.get(f"/v1/models/{mid}/deployments").status_code == 404
        assert other.get(f"/v1/models/{mid}/deployments/{dep['id']}").status_code == 404
        assert other.post(f"/v1/models/{mid}/deployments/{dep['id']}/rollback").status_code \
            == 404
        assert other.get(f"/v1/models/{mid}/assignment",
                         params={"robot_id": "rob_fleet_iso"}).status_code == 404
        assert other.post(f"/v1/models/{mid}/deployments",
                          json={"version": "v2"}).status_code == 404
        # the same robot id in another workspace is another robot
        answer = other.post("/v1/robots/rob_fleet_iso/heartbeat",
                            json={"period_s": 2.0, "model_id": mid}).json()
        assert answer["assignment"] is None and "not found" in answer["reason"]
        assert other.get("/v1/robots/rob_fleet_iso").json()["period_s"] == 2.0
    assert api.get("/v1/robots/rob_fleet_iso").json()["period_s"] == 1.0
    assert api.get(f"/v1/models/{mid}/deployments/{dep['id']}").json()["state"] != "cancelled"
    api.post(f"/v1/models/{mid}/deployments/{dep['id']}/rollback")


def test_percent_and_all_target_reporting_robots(api: httpx.Client,
                                                 fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    # Every robot that reported the model reports again with a long period (online all through
    # the test), but one whose short period makes it offline: percent and all pass it by.
    earlier = [r["id"] for r in api.get("/v1/robots").json()["data"] if r["model_id"] == mid]
    for robot in {*earlier, *(f"rob_fleet_pct{i}" for i in range(1, 6))}:
        beat(api, robot, mid, "v1", period_s=600.0)
    beat(api, "rob_fleet_pct3_gone", mid, "v1", period_s=0.05)
    time.sleep(1.0)  # 20 periods without a heartbeat
    robots = {r["id"]: r for r in api.get("/v1/robots").json()["data"] if r["model_id"] == mid}
    assert robots["rob_fleet_pct3_gone"]["status"] == "offline"
    reporting = sorted(r for r in robots if r != "rob_fleet_pct3_gone")
    assert len(reporting) >= 5 and all(robots[r]["status"] == "online" for r in reporting)
    first = deploy(api, mid, version="v2", percent=40)
    assert first["robots"] == reporting[:math.ceil(len(reporting) * 0.4)]
    again = deploy(api, mid, version="v2", percent=40)
    assert again["robots"] == first["robots"]  # deterministic
    assert api.get(f"/v1/models/{mid}/deployments/{first['id']}").json()["state"] \
        == "cancelled"
    everyone = deploy(api, mid, version="v2", mode="shadow")
    assert everyone["robots"] == reporting
    for r in reporting:
        assert assignment(api, mid, r)["shadow"]["deployment_id"] == everyone["id"]
    api.post(f"/v1/models/{mid}/deployments/{everyone['id']}/rollback")
    # Named explicitly, an offline robot is the operator's choice.
    named = deploy(api, mid, version="v2", robots=["rob_fleet_pct3_gone"])
    assert named["robots"] == ["rob_fleet_pct3_gone"]
    api.post(f"/v1/models/{mid}/deployments/{named['id']}/rollback")
    # Once every robot is offline, percent and all refuse and say why.
    for robot in reporting:
        beat(api, robot, mid, "v1", period_s=0.05)
    time.sleep(1.0)
    for target in ({"percent": 50}, {}):
        r = api.post(f"/v1/models/{mid}/deployments", json={"version": "v2", **target})
        status, code, message = error_of(r)
        assert (status, code) == (409, "conflict"), r.text
        assert "offline" in message and "robots: [...]" in message, message
    for robot in reporting:  # back online for the tests that follow
        beat(api, robot, mid, "v1", period_s=600.0)


def test_promote_widens_to_the_fleet(api: httpx.Client, fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    beat(api, "rob_fleet_p1", mid, "v1")
    dep = deploy(api, mid, version="v2", robots=["rob_fleet_p1"])
    before = len(api.get(f"/v1/models/{mid}").json()["promotions"])
    r = api.post(f"/v1/models/{mid}/deployments/{dep['id']}/promote")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "complete" and "promoted" in r.json()["reason"]
    model = api.get(f"/v1/models/{mid}").json()
    assert model["active_version"] == "v2"
    assert len(model["promotions"]) == before + 1
    assert (model["promotions"][-1]["from"], model["promotions"][-1]["to"]) == ("v1", "v2")
    robots = [r["id"] for r in api.get("/v1/robots").json()["data"] if r["model_id"] == mid]
    for robot in [*robots, "rob_fleet_never_seen"]:
        assert assignment(api, mid, robot)["version"] == "v2", robot
    # Widened: nothing left to promote, and a rollback would change nothing; going back is a
    # promotion of the previous version, which the answer names.
    for action in ("rollback", "promote"):
        refused = api.post(f"/v1/models/{mid}/deployments/{dep['id']}/{action}")
        status, code, message = error_of(refused)
        assert (status, code) == (409, "conflict"), refused.text
        assert "was promoted" in message and f'/v1/models/{mid}/promote {{"version": "v1"}}' in message
    assert api.get(f"/v1/models/{mid}").json()["active_version"] == "v2"
    assert api.get(f"/v1/models/{mid}/deployments/{dep['id']}").json()["state"] == "complete"
    # the plain promote is "deploy to all": it ends the pins of live deployments
    canary = deploy(api, mid, version="v1", robots=["rob_fleet_p1"])
    assert assignment(api, mid, "rob_fleet_p1")["version"] == "v1"
    assert api.post(f"/v1/models/{mid}/promote", json={"version": "v1"}).status_code == 200
    assert api.post(f"/v1/models/{mid}/promote", json={"version": "v2"}).status_code == 200
    assert assignment(api, mid, "rob_fleet_p1")["version"] == "v2"
    ended = api.get(f"/v1/models/{mid}/deployments/{canary['id']}").json()  # in the same request
    assert ended["state"] == "cancelled" and "promotion of v2" in ended["reason"], ended
    # a plain promote of a shadow's candidate ends the shadow: nothing left to compare
    shadow = deploy(api, mid, version="v1", mode="shadow", robots=["rob_fleet_p1"])
    assert assignment(api, mid, "rob_fleet_p1")["shadow"]["version"] == "v1"
    assert api.post(f"/v1/models/{mid}/promote", json={"version": "v1"}).status_code == 200
    a = assignment(api, mid, "rob_fleet_p1")
    assert (a["version"], a["shadow"]) == ("v1", None)
    ended = api.get(f"/v1/models/{mid}/deployments/{shadow['id']}").json()
    assert ended["state"] == "complete" and ended["reason"] == "v1 was promoted to the whole " \
        "fleet", ended


def test_deleting_the_model_removes_its_deployments(server: Server, api: httpx.Client,
                                                    fleet_model: dict[str, Any]) -> None:
    mid = fleet_model["id"]
    assert api.get(f"/v1/models/{mid}/deployments").json()["total"] > 0
    assert api.delete(f"/v1/models/{mid}").status_code == 200
    assert api.get(f"/v1/models/{mid}/deployments").status_code == 404
    store = store_of(server.data_dir)
    try:
        left = store.conn.execute("SELECT count(*) FROM deployments WHERE model_id=?", (mid,))
        assert left.fetchone()[0] == 0
    finally:
        store.close()
    # its robots stay in the fleet, and their heartbeats answer that the model is gone
    answer = api.post("/v1/robots/rob_fleet_a/heartbeat",
                      json={"period_s": 1.0, "model_id": mid}).json()
    assert answer["assignment"] is None and "not found" in answer["reason"]


# the guard's decision alone (no server): fleet/guard.evaluate over plain rows ------------
def _dep(mode: str = "active", **guard: Any) -> dict[str, Any]:
    return {"model_id": "mdl_g", "version": "v2", "mode": mode, "robots": ["rob_g1", "rob_g2"],
            "guard": {**GUARD, **guard}, "state": "rolling_out", "reason": None,
            "progress": {}, "observing_since": None, "created_at": 100.0}


def _robot(at: float, version: str = "v2", **fields: Any) -> dict[str, Any]:
    return {"last_seen": at, "serving": {"model_id": "mdl_g", "version": version},
            "health": GOOD_HEALTH, "shadow": None, "refused": [], **fields}


def test_guard_moves_through_its_states_only_when_every_robot_reports() -> None:
    from kairo_backend.fleet.guard import evaluate

    dep = _dep(min_observation_s=0.0)
    one = evaluate(dep, {"rob_g1": _robot(101.0)}, 102.0)
    assert one.state == "rolling_out" and one.progress["rob_g2"]["status"] == "pending"
    stale = evaluate(dep, {"rob_g1": _robot(99.0), "rob_g2": _robot(99.0)}, 102.0)
    assert stale.state == "rolling_out"  # heartbeats older than the deployment do not count
    both = evaluate(dep, {"rob_g1": _robot(101.0), "rob_g2": _robot(101.5)}, 102.0)
    assert (both.state, both.observing_since) == ("complete", 102.0)  # no observation asked
    waiting = evaluate(_dep(min_observation_s=5.0),
                       {"rob_g1": _robot(101.0), "rob_g2": _robot(101.0)}, 102.0)
    assert waiting.state == "observing"


def test_guard_rates_and_silence() -> None:
    from kairo_backend.fleet.guard import drop_rate, error_rate, evaluate, shadow_error_rate

    assert error_rate(None) == drop_rate({"processed": 0, "dropped": 0}) == 0.0
    assert error_rate({"processed": 3, "errors": 1}) == 0.25
    assert shadow_error_rate({"samples": 0, "errors": 2}) == 2.0
    # exactly at the threshold is within it
    at_limit = {**GOOD_HEALTH, "processed": 95, "errors": 5}
    assert evaluate(_dep(), {"rob_g1": _robot(101.0, health=at_limit)}, 102.0).state \
        == "rolling_out"
    silent = evaluate(_dep(report_within_s=10.0), {"rob_g1": _robot(101.0)}, 111.0)
    assert silent.state == "rolled_back"
    assert silent.reason == "rob_g2 never reported v2 (served) within report_within_s 10 s"
    assert silent.progress["rob_g1"]["status"] == "serving"
