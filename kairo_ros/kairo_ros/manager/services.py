"""Services promote, list_models, get_model, list_runs, get_run, delete_model, list_robots.

Every failure is answered in-band: `success: false` and a message that says
what went wrong and what to do (an unreachable backend is named by URL).
Each answer comes within `request_timeout_s`: the API client's deadline.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from kairo_interfaces.msg import ModelEvent
from kairo_interfaces.srv import DeleteModel, GetModel, GetRun, ListModels, ListRobots, ListRuns, PromoteModel
from kairo_ros.api import KairoArgumentError, KairoError, KairoNotFoundError
from kairo_ros.manager.backend import BackendLink
from kairo_ros.manager.conversions import model_msg, robot_msg, run_msg
from kairo_ros.manager.train_action import EventSink

_VERSION = re.compile(r"^v[1-9][0-9]*$")


def _required(name: str, value: str, hint: str) -> str:
    value = value.strip()
    if not value:
        raise KairoArgumentError(f"{name} is empty; {hint}")
    return value


def _model_id(value: str) -> str:
    return _required("model_id", value, "give the mdl_... ID (list_models lists them)")


class ManagerServices:
    def __init__(self, node: Node, backend: BackendLink, group: CallbackGroup, publish_event: EventSink) -> None:
        self._log = node.get_logger()
        self._backend = backend
        self._publish_event = publish_event
        handlers: list[tuple[Any, str, Callable[[Any, Any], Any]]] = [
            (PromoteModel, "promote", self._promote),
            (ListModels, "list_models", self._list_models),
            (GetModel, "get_model", self._get_model),
            (ListRuns, "list_runs", self._list_runs),
            (GetRun, "get_run", self._get_run),
            (DeleteModel, "delete_model", self._delete_model),
            (ListRobots, "list_robots", self._list_robots),
        ]
        self._services = [node.create_service(srv, name, self._answered_in_band(name, handler), callback_group=group)
                          for srv, name, handler in handlers]

    def _answered_in_band(self, name: str, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def serve(request: Any, response: Any) -> Any:
            try:
                handler(request, response)
                response.success = True
            except KairoError as exc:
                response.success, response.message = False, str(exc)
                self._log.warning(f"{name}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a bad request never takes the node down
                response.success, response.message = False, f"internal error in kairo_manager: {exc}"
                self._log.error(f"{name} failed unexpectedly: {type(exc).__name__}: {exc}")
            return response
        return serve

    def _promote(self, request: PromoteModel.Request, response: PromoteModel.Response) -> None:
        model_id = _model_id(request.model_id)
        version = _required("version", request.version, "give the version to make active, e.g. v2")
        if not _VERSION.match(version):
            raise KairoArgumentError(f"version {version!r} is not a version name; use vN, e.g. v2")
        model = self._backend.call(lambda api: api.promote(model_id, version))
        response.model = model_msg(model)
        response.message = f"{model.id} {model.active_version} is active"
        self._log.info(response.message)
        self._publish_event(ModelEvent.PROMOTED, model.id, model.active_version, model.robot_id, model.task)

    def _list_models(self, request: ListModels.Request, response: ListModels.Response) -> None:
        page = self._backend.call(lambda api: api.list_models())
        robot_id, task = request.robot_id.strip(), request.task.strip()
        models = [m for m in page.data if (not robot_id or m.robot_id == robot_id) and (not task or m.task == task)]
        response.models = [model_msg(m) for m in models]
        response.total = page.total if not (robot_id or task) else len(models)
        response.message = f"{len(models)} model(s)"

    def _get_model(self, request: GetModel.Request, response: GetModel.Response) -> None:
        model_id = _model_id(request.model_id)
        response.model = model_msg(self._backend.call(lambda api: api.get_model(model_id)))

    def _list_runs(self, request: ListRuns.Request, response: ListRuns.Response) -> None:
        model_id = _model_id(request.model_id)
        page = self._backend.call(lambda api: api.list_runs(model_id))
        response.runs = [run_msg(r) for r in page.data]
        response.total = page.total
        response.message = f"{len(page.data)} run(s)"

    def _get_run(self, request: GetRun.Request, response: GetRun.Response) -> None:
        model_id = _model_id(request.model_id)
        run_id = _required("run_id", request.run_id, "give the run_... ID (list_runs lists a model's runs)")
        run = self._backend.call(lambda api: api.get_run(model_id, run_id))
        response.run = run_msg(run)
        response.logs = list(run.logs)

    def _delete_model(self, request: DeleteModel.Request, response: DeleteModel.Response) -> None:
        model_id = _model_id(request.model_id)
        # Read first: the deleted event names the model's robot and task.
        model = self._backend.call(lambda api: api.get_model(model_id))
        with contextlib.suppress(KairoNotFoundError):  # gone in between: the outcome asked for
            self._backend.call(lambda api: api.delete_model(model_id))
        response.message = f"{model_id} and all its versions deleted"
        self._log.info(response.message)
        self._publish_event(ModelEvent.DELETED, model_id, "", model.robot_id, model.task)

    def _list_robots(self, request: ListRobots.Request, response: ListRobots.Response) -> None:
        page = self._backend.call(lambda api: api.list_robots())
        task = request.task.strip()
        robots = [r for r in page.data if not task or r.task == task]
        response.robots = [robot_msg(r) for r in robots]
        response.message = f"{len(robots)} robot(s)"
