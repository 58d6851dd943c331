from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel

from kairo_features.schema import TASKS

Task = Literal["manipulation", "navigation", "object_detection"]
assert set(get_args(Task)) == set(TASKS), "schemas.common.Task must list kairo_features' TASKS"
RunStatus = Literal["queued", "running", "complete", "failed", "cancelled"]
ModelStatus = Literal["training", "ready", "active", "failed"]
ExportFormat = Literal["onnx", "ros2-pkg"]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


def _utf8_text(value: str) -> str:
    # JSON may escape a lone surrogate (\ud800): Python takes it, UTF-8 cannot hold it
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_utf8_text)]
# IDs the backend hands out (ds_…, mdl_…, run_…); unknown ones answer 404
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
VERSION_PATTERN = r"^v[0-9]{1,9}$"

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 413, 422, 429, 503, 507)
}
