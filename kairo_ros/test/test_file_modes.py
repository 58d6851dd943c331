"""Files a user gets are written whole and get the mode the user's umask gives (not mkstemp's 0600):
models exported through the API client (the manager's export action downloads with it) and the
demo's training curves."""

from __future__ import annotations

import os
import pathlib
import stat
from collections.abc import Callable, Iterator

import pytest

from kairo_ros.api import KairoApiClient
from kairo_ros.demo.curves import save_training_curves


@pytest.fixture(params=[0o022, 0o027], ids=["umask 022", "umask 027"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_exported_model_has_the_usual_mode(backend, trained_model: Callable, umask: int,  # type: ignore[no-untyped-def]
                                           tmp_path: pathlib.Path) -> None:
    model = trained_model("manipulation")
    with KairoApiClient(backend.url, backend.key) as api:
        link = api.export(model.model_id, "onnx", model.version)
        result = api.download(link.download_url, tmp_path / "exports" / "arm.onnx", link.sha256)
    assert result.path.stat().st_size > 0
    assert mode(result.path) == 0o666 & ~umask
    assert [p.name for p in result.path.parent.iterdir()] == ["arm.onnx"]  # no temporary file left


def test_demo_curves_have_the_usual_mode(umask: int, tmp_path: pathlib.Path) -> None:
    logs = [f"epoch {e}/3 loss={1 / e:.6f} val_loss={1.1 / e:.6f} (0.10s)" for e in (1, 2, 3)]
    path = save_training_curves([("v1", logs)], tmp_path / "demo-output" / "training_curves.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert mode(path) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["training_curves.png"]
