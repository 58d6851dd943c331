"""The dashboard's pages and actions, under /ui (left out of the OpenAPI schema).

Pages read the store as the API routes do, scoped to the session's workspace;
every action calls the API route's own function, so the dashboard and the API
can never disagree on what an action does or refuses.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import anyio
import pydantic
from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, StreamingResponse

from kairo_backend.deps import Context, model_or_404, run_or_404
from kairo_backend.errors import KairoError, NotFound
from kairo_backend.routes import deployments as deployment_routes
from kairo_backend.routes import exports as export_routes
from kairo_backend.routes import models as model_routes
from kairo_backend.routes import runs as run_routes
from kairo_backend.schemas.datasets import dataset_public
from kairo_backend.schemas.fleet import DeploymentCreate
from kairo_backend.schemas.models import ExportRequest, PromoteRequest, model_public
from kairo_backend.schemas.runs import run_public
from kairo_backend.store import Store
from kairo_backend.store.rows import ModelRow, RunSummary, as_row
from kairo_backend.ui import auth, fleet_view
from kairo_backend.ui.auth import Refused, SignInRequired, UiSession, checked_form, field
from kairo_backend.ui.curves import epochs_after
from kairo_backend.ui.render import SECURITY_HEADERS, fragment, page

ACTIVE = ("queued", "running")
STREAM_POLL_S = 0.5  # how often a run's event stream looks for new epochs
STREAM_MAX_S = 300.0  # then the browser reconnects (EventSource), resuming after its last id


class UiRoute(APIRoute):
    """Turns the API's errors into pages: a sign-in, a refusal, or the error's message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInRequired:
                return RedirectResponse("/ui/signin", status_code=303)
            except Refused as exc:
                return page("error.html", 403, session=None, title="Refused",
                            message=f"Refused: {exc.reason}.")
            except KairoError as exc:
                return page("error.html", exc.status, session=auth.optional_session(request),
                            title=f"Error {exc.status}", message=exc.message)

        return handler


router = APIRouter(prefix="/ui", include_in_schema=False, route_class=UiRoute)
Session = Annotated[UiSession, Depends(auth.require_session)]


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


# sign-in ------------------------------------------------------------------------------
@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return _see("/ui/models")


@router.get("/signin")
def signin_page(request: Request) -> Response:
    if auth.optional_session(request) is not None:
        return _see("/ui/models")
    return page("signin.html", session=None, title="Sign in", error=None)


@router.post("/signin")
async def signin(request: Request) -> Response:
    auth.check_origin(request)  # no session to carry a token yet: the origin must be ours
    form = await request.form(max_files=0, max_fields=5)
    key = auth.field(form, "api_key")
    created = await run_in_threadpool(auth.sessions(request).create, key) if key else None
    if created is None:
        # never echoed back: the field comes back empty
        return page("signin.html", 401, session=None, title="Sign in",
                    error="That API key is unknown or revoked. Paste a key from "
                          "'kairo-backend keys create --workspace NAME'.")
    response = _see("/ui/models")
    auth.set_session_cookie(response, request, created[0])
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    session, _ = await checked_form(request)
    await run_in_threadpool(auth.sessions(request).end, session.token)
    response = _see("/ui/signin")
    auth.clear_session_cookie(response, request)
    return response


# models -------------------------------------------------------------------------------
SUMMARY_COLUMNS = ("id, model_id, version, status, created_at, metrics, artifact_size_mb,"
                   " sha256, artifact_error")


def run_summaries(store: Store, ws: str) -> dict[str, list[RunSummary]]:
    """Store.runs_for_models with only the columns model_public reads: the models page
    decodes no run's config or progress (a third of the time with 1,000 runs)."""
    out: dict[str, list[RunSummary]] = {}
    for row in store.conn.execute(f"SELECT {SUMMARY_COLUMNS} FROM runs WHERE workspace_id=?"
                                  " ORDER BY seq", (ws,)).fetchall():
        run = as_row(RunSummary, row)
        shown = store.unrecorded.get(run["id"])  # an outcome not written yet (a full disk)
        if shown is not None and run["status"] in ACTIVE and "status" in shown:
            run["status"] = shown["status"]  # of its columns, the only one summarised
        if isinstance(row["metrics"], str):
            run["metrics"] = json.loads(row["metrics"])
        out.setdefault(run["model_id"], []).append(run)
    return out


@router.get("/models")
async def models_page(request: Request, session: Session) -> Response:
    """The workspace's models. Their table is rendered once and reused until the
    database changes, as GET /v1/models is (on the event loop's thread, whose cache
    every request shares)."""
    ctx = _ctx(request)
    ws = session.workspace_id

    def build() -> bytes:
        runs = run_summaries(ctx.store, ws)
        rows = []
        for m in ctx.store.list_models(ws):
            model_runs = runs.get(m["id"], [])
            rows.append({**model_public(m, model_runs, []), "updated_ts": m["updated_at"],
                         "latest_run": model_runs[-1] if model_runs else None})
        rows.sort(key=lambda r: r["updated_ts"], reverse=True)
        return fragment("models_table.html", models=rows).encode()

    table = ctx.store.cached(f"ui-models:{ws}", build).decode()
    return page("models.html", session=session, title="Models", nav="models",
                table=Markup(table))


@router.get("/models/{model_id}")
def model_page(model_id: str, request: Request, session: Session, done: str = "",
               version: str = "") -> Response:
    ctx = _ctx(request)
    model = model_or_404(ctx, session.workspace_id, model_id)
    runs = ctx.store.list_runs(model_id)  # newest first
    shown = model_public(model, list(reversed(runs)), ctx.store.promotions(model_id))
    positions = ctx.store.queue_positions() if any(r["status"] == "queued" for r in runs) else {}
    versions = [{**v, "position_in_queue": positions.get(v["run_id"], 0)}
                for v in reversed(shown["versions"])]
    deployments = fleet_view.deployments(ctx, session.workspace_id, model_id)
    return page("model.html", session=session, title=model["name"], nav="models", model=shown,
                model_ts=model, versions=versions, deployments=deployments,
                done=_done_text(done, version))


_DONE = {"promoted": "{v} is now the active version.",
         "cancelled": "The run of {v} was cancelled.",
         "deployed": "The deployment of {v} has started.",
         "widened": "The deployment was widened to the whole fleet: {v} is active.",
         "rolled_back": "The deployment of {v} was rolled back.",
         "deleted": "The model was deleted."}


def _done_text(done: str, version: str) -> str | None:
    text = _DONE.get(done)
    return text.format(v=version[:20] or "the version") if text else None


@router.get("/models/{model_id}/runs/{run_id}")
def run_page(model_id: str, run_id: str, request: Request, session: Session) -> Response:
    ctx = _ctx(request)
    model = model_or_404(ctx, session.workspace_id, model_id)
    run = run_or_404(ctx, session.workspace_id, model_id, run_id)
    position = ctx.store.queue_positions().get(run_id, 0) if run["status"] == "queued" else 0
    shown = run_public(run, position, ctx.store.run_logs(run_id))
    points, last_id = epochs_after(ctx.store, run_id)
    return page("run.html", session=session, title=f"{model['name']} {run['version']}", nav="models",
                model=model, run=shown, live=run["status"] in ACTIVE,
                curve=json.dumps({"points": points, "after": last_id,
                                  "epochs_total": shown["progress"]["epochs_total"]}
                                 ).replace("<", "\\u003c"))


def _run_state(ctx: Context, run_id: str) -> dict[str, Any] | None:
    run = ctx.store.get_run(run_id)
    if run is None:
        return None
    position = ctx.store.queue_positions().get(run_id, 0) if run["status"] == "queued" else 0
    shown = run_public(run, position)
    return {"status": shown["status"], "position_in_queue": shown["position_in_queue"],
            **{k: shown["progress"][k] for k in ("epoch", "epochs_total",
                                                 "estimated_remaining_s")}}


@router.get("/models/{model_id}/runs/{run_id}/events")
async def run_events(model_id: str, run_id: str, request: Request, session: Session,
                     after: int = 0) -> Response:
    """Server-sent events while the run is queued or running: `epoch` (a curve point),
    `state` (status, queue position, progress), then `done` when it has finished."""
    ctx = _ctx(request)
    await run_in_threadpool(run_or_404, ctx, session.workspace_id, model_id, run_id)
    resumed = request.headers.get("last-event-id", "")
    if resumed.isascii() and resumed.isdigit() and len(resumed) < 16:
        after = int(resumed)

    async def stream() -> AsyncIterator[str]:
        last_id, last_state = max(0, after), None
        yield "retry: 1000\n\n"
        deadline = time.monotonic() + STREAM_MAX_S
        while time.monotonic() < deadline:
            points, last_id = await anyio.to_thread.run_sync(epochs_after, ctx.store, run_id,
                                                             last_id)
            for i, point in enumerate(points):
                # the batch's last event carries the resume point (the last log id read)
                resume = f"id: {last_id}\n" if i == len(points) - 1 else ""
                yield f"{resume}event: epoch\ndata: {json.dumps(point)}\n\n"
            state = await anyio.to_thread.run_sync(_run_state, ctx, run_id)
            if state is None or state["status"] not in ACTIVE:
                yield f"event: done\ndata: {json.dumps(state)}\n\n"
                return
            if state != last_state:
                yield f"event: state\ndata: {json.dumps(state)}\n\n"
                last_state = state
            await anyio.sleep(STREAM_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})


# actions on models and runs ----------------------------------------------------------
def _confirm(session: UiSession, title: str, question: str, button: str, back: str,
             fields: dict[str, str] | None = None, error: str | None = None,
             status: int = 200, danger: bool = False) -> Response:
    return page("confirm.html", status, session=session, title=title, question=question,
                button=button, back=back, fields=fields or {}, error=error, danger=danger)


def _validation_message(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                     for e in exc.errors()[:3])


@router.get("/models/{model_id}/promote")
def promote_confirm(model_id: str, request: Request, session: Session,
                    version: str = "") -> Response:
    model = model_or_404(_ctx(request), session.workspace_id, model_id)
    return _confirm(session, "Promote a version",
                    f"Make {version} the active version of {model['name']}? Every robot "
                    f"that serves it without a deployment pin switches from "
                    f"{model['active_version'] or 'no version'} to {version}.",
                    f"Promote {version}", f"/ui/models/{model_id}", {"version": version})


@router.post("/models/{model_id}/promote")
async def promote(model_id: str, request: Request) -> Response:
    session, form = await checked_form(request)
    version = field(form, "version")
    back = f"/ui/models/{model_id}"
    try:
        body = PromoteRequest(version=version)
        await run_in_threadpool(model_routes.promote, model_id, body, _ctx(request),
                                session.workspace_id)
    except (KairoError, pydantic.ValidationError) as exc:
        message = exc.message if isinstance(exc, KairoError) else _validation_message(exc)
        return _confirm(session, "Promote a version", f"Make {version} the active version?",
                        f"Promote {version}", back, {"version": version}, error=message,
                        status=exc.status if isinstance(exc, KairoError) else 422)
    return _see(f"{back}?done=promoted&version={version}")


@router.get("/models/{model_id}/delete")
def delete_confirm(model_id: str, request: Request, session: Session) -> Response:
    model = model_or_404(_ctx(request), session.workspace_id, model_id)
    return _confirm(session, "Delete a model",
                    f"Delete {model['name']} ({model_id}) with all its versions, runs, logs "
                    "and artifacts? Its queued and running runs are cancelled. This cannot "
                    "be undone.", "Delete the model", f"/ui/models/{model_id}", danger=True)


@router.post("/models/{model_id}/delete")
async def delete(model_id: str, request: Request) -> Response:
    session, _ = await checked_form(request)
    try:
        await run_in_threadpool(model_routes.delete_model, model_id, _ctx(request),
                                session.workspace_id)
    except KairoError as exc:
        return _confirm(session, "Delete a model", f"Delete {model_id}?", "Delete the model",
                        f"/ui/models/{model_id}", error=exc.message, status=exc.status,
                        danger=True)
    return _see("/ui/models")


@router.get("/models/{model_id}/runs/{run_id}/cancel")
def cancel_confirm(model_id: str, run_id: str, request: Request, session: Session
                   ) -> Response:
    run = run_or_404(_ctx(request), session.workspace_id, model_id, run_id)
    return _confirm(session, "Cancel a run",
                    f"Cancel the {run['status']} run {run_id} ({run['version']})? Its worker "
                    "stops and the version will not be trained.", "Cancel the run",
                    f"/ui/models/{model_id}/runs/{run_id}", danger=True)


@router.post("/models/{model_id}/runs/{run_id}/cancel")
async def cancel(model_id: str, run_id: str, request: Request) -> Response:
    session, _ = await checked_form(request)
    back = f"/ui/models/{model_id}/runs/{run_id}"
    try:
        run = await run_in_threadpool(run_routes.cancel_run, model_id, run_id, _ctx(request),
                                      session.workspace_id)
    except KairoError as exc:
        return _confirm(session, "Cancel a run", f"Cancel the run {run_id}?", "Cancel the run",
                        back, error=exc.message, status=exc.status, danger=True)
    return _see(f"/ui/models/{model_id}?done=cancelled&version={run['model_version']}")


@router.post("/models/{model_id}/export")
async def export(model_id: str, request: Request) -> Response:
    """A signed download link from the API's export (the same 24 h link)."""
    session, form = await checked_form(request)
    ctx = _ctx(request)
    model = await run_in_threadpool(model_or_404, ctx, session.workspace_id, model_id)
    try:
        body = ExportRequest(format=field(form, "format"),  # type: ignore[arg-type]
                             version=field(form, "version"))
        link = await run_in_threadpool(export_routes.export, model_id, body, request, ctx,
                                       session.workspace_id)
    except pydantic.ValidationError as exc:
        return page("error.html", 422, session=session, title="Export",
                    message=_validation_message(exc))
    return page("export.html", session=session, title="Export", model=model, link=link)


# deployments ---------------------------------------------------------------------------
def _deploy_form(request: Request, session: UiSession, model: ModelRow, version: str,
                 mode: str, error: str | None = None, status: int = 200) -> Response:
    what = "shadow" if mode == "shadow" else "canary"
    return page("deploy.html", status, session=session, nav="models",
                title=f"Start a {what} deployment", model=model, version=version, mode=mode,
                robots=fleet_view.robot_ids(_ctx(request), session.workspace_id),
                button=f"Start the {what} of {version}", error=error)


@router.get("/models/{model_id}/deploy")
def deploy_confirm(model_id: str, request: Request, session: Session, version: str = "",
                   mode: str = "active") -> Response:
    model = model_or_404(_ctx(request), session.workspace_id, model_id)
    return _deploy_form(request, session, model, version,
                        "shadow" if mode == "shadow" else "active")


def _number(form: Any, name: str) -> float | None:
    text = field(form, name)
    return float(text) if text else None


@router.post("/models/{model_id}/deploy")
async def deploy(model_id: str, request: Request) -> Response:
    session, form = await checked_form(request)
    ctx = _ctx(request)
    model = await run_in_threadpool(model_or_404, ctx, session.workspace_id, model_id)
    version, mode = field(form, "version"), field(form, "mode")
    robots = [r for r in form.getlist("robots") if isinstance(r, str)]
    try:
        guard = {k: _number(form, k) for k in ("max_error_rate", "max_drop_rate",
                                                "max_divergence", "min_observation_s",
                                                "report_within_s")}
        percent = field(form, "percent")
        body = DeploymentCreate.model_validate({
            "version": version, "mode": mode, "robots": robots or None,
            "percent": int(percent) if percent else None,
            "guard": {k: v for k, v in guard.items() if v is not None or k == "max_divergence"}})
        await run_in_threadpool(deployment_routes.create_deployment, model_id, body, ctx,
                                session.workspace_id)
    except (KairoError, pydantic.ValidationError, ValueError) as exc:
        message = (exc.message if isinstance(exc, KairoError) else
                   _validation_message(exc) if isinstance(exc, pydantic.ValidationError) else
                   f"not a number: {exc}")
        return _deploy_form(request, session, model, version, mode, message,
                            exc.status if isinstance(exc, KairoError) else 422)
    return _see(f"/ui/models/{model_id}?done=deployed&version={version}")


_DEPLOYMENT_ACTIONS = {
    "promote": ("Widen a deployment", "Widen the deployment {d} to the whole fleet? {v} becomes "
                "the active version of {m} for every robot.", "Widen {v} to all robots",
                "widened"),
    "rollback": ("Roll back a deployment", "Roll back the deployment {d}? Its robots return to "
                 "the active version {a} at once.", "Roll back {v}", "rolled_back"),
}


def _deployment_action(action: str) -> tuple[str, str, str, str]:
    if action not in _DEPLOYMENT_ACTIONS:
        raise NotFound(f"no deployment action {action!r}; use promote or rollback")
    return _DEPLOYMENT_ACTIONS[action]


@router.get("/models/{model_id}/deployments/{deployment_id}/{action}")
def deployment_confirm(model_id: str, deployment_id: str, action: str, request: Request,
                       session: Session) -> Response:
    ctx = _ctx(request)
    title, question, button, _ = _deployment_action(action)
    model = model_or_404(ctx, session.workspace_id, model_id)
    dep = deployment_routes.get_deployment(model_id, deployment_id, ctx, session.workspace_id)
    words = {"d": deployment_id, "v": dep["version"], "m": model["name"],
             "a": model["active_version"] or "(none)"}
    return _confirm(session, title, question.format(**words), button.format(**words),
                    f"/ui/models/{model_id}", danger=action == "rollback")


@router.post("/models/{model_id}/deployments/{deployment_id}/{action}")
async def deployment_action(model_id: str, deployment_id: str, action: str,
                            request: Request) -> Response:
    session, _ = await checked_form(request)
    title, _question, button, done = _deployment_action(action)
    run_action = (deployment_routes.promote_deployment if action == "promote"
                  else deployment_routes.rollback_deployment)
    try:
        dep = await run_in_threadpool(run_action, model_id, deployment_id, _ctx(request),
                                      session.workspace_id)
    except KairoError as exc:
        return _confirm(session, title, f"{title} {deployment_id}?", title,
                        f"/ui/models/{model_id}", error=exc.message, status=exc.status)
    return _see(f"/ui/models/{model_id}?done={done}&version={dep['version']}")


# fleet and datasets ------------------------------------------------------------------
@router.get("/fleet")
def fleet_page(request: Request, session: Session) -> Response:
    return page("fleet.html", session=session, title="Fleet", nav="fleet",
                robots=fleet_view.robots(_ctx(request), session.workspace_id))


@router.get("/datasets")
def datasets_page(request: Request, session: Session) -> Response:
    rows = []
    for ds in _ctx(request).store.list_datasets(session.workspace_id):
        shown = dataset_public(ds)
        source = shown["source"]
        shown["origin"] = ("recording" if source else
                           "demo" if ds["name"].startswith("demo-") else "upload")
        shown["dropped_total"] = sum(shown["dropped"].values())
        rows.append(shown)
    return page("datasets.html", session=session, title="Datasets", nav="datasets", datasets=rows)
