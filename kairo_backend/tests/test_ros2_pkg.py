"""The ros2-pkg export: the package generator alone, then through a real server."""

from __future__ import annotations

import ast
import hashlib
import io
import tarfile
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
import yaml

from conftest import Server
from kairo_backend.exporters import ros2_pkg
from kairo_backend.exporters.archive import FIXED_MTIME, Entry, tar_gz_bytes
from kairo_features.tasks import default_features

ONNX = bytes(range(256)) * 40


def spec(**changes: Any) -> ros2_pkg.PackageSpec:
    fields: dict[str, Any] = {
        "model_id": "mdl_abc123def456", "version": "v2", "name": "arm <model> & co",
        "task": "manipulation", "robot_id": "rob_a1b2c3d4", "onnx": ONNX,
        "onnx_sha256": hashlib.sha256(ONNX).hexdigest(),
        "features": default_features("manipulation")}
    fields.update(changes)
    return ros2_pkg.PackageSpec(**fields)


def members(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                for m in tar.getmembers()}


def test_package_names_are_valid_ros_names() -> None:
    assert ros2_pkg.package_name("mdl_abc123", "v2") == "kairo_model_abc123_v2"
    assert ros2_pkg.package_name("mdl_ABC123", "v10") == "kairo_model_abc123_v10"
    assert ros2_pkg.package_version("v12") == "12.0.0"
    for bad in [("mdl_a-b", "v1"), ("mdl_", "v1"), ("mdl_abc", "v1/..")]:
        with pytest.raises(ValueError):
            ros2_pkg.package_name(*bad)
    with pytest.raises(ValueError):
        ros2_pkg.package_version("2")


def test_archive_is_deterministic_and_holds_one_package() -> None:
    first, again = ros2_pkg.build(spec()), ros2_pkg.build(spec())
    assert first == again, "the same version gives the same bytes"
    assert first[4:8] == b"\0\0\0\0", "no time in the gzip header"
    found = members(first)
    names = list(found)
    assert names == sorted(names)
    pkg = "kairo_model_abc123def456_v2"
    assert {n.split("/")[0] for n in names} == {pkg}
    assert {n.removeprefix(pkg + "/") for n in names if found[n][0].isfile()} == {
        "package.xml", "setup.py", "setup.cfg", f"resource/{pkg}", f"{pkg}/__init__.py",
        "models/model.onnx", "models/model.onnx.sha256", "config/params.yaml",
        "launch/model.launch.py", "README.md"}
    for info, _data in found.values():
        assert info.mtime == FIXED_MTIME and info.uid == info.gid == 0
        assert info.uname == info.gname == ""
        assert info.isfile() or info.isdir()
        assert info.mode == (0o755 if info.isdir() else 0o644)
    assert found[f"{pkg}/models/model.onnx"][1] == ONNX
    assert found[f"{pkg}/models/model.onnx.sha256"][1] == \
        f"{hashlib.sha256(ONNX).hexdigest()}  model.onnx\n".encode()
    assert ros2_pkg.build(spec(version="v3")) != first


def test_package_files_say_what_ros_needs() -> None:
    pkg = "kairo_model_abc123def456_v2"
    built = members(ros2_pkg.build(spec()))
    found = {name.removeprefix(pkg + "/"): data for name, (_i, data) in built.items()}
    xml = ET.fromstring(found["package.xml"])  # type: ignore[arg-type]
    assert xml.get("format") == "3" and xml.findtext("name") == pkg
    assert xml.findtext("version") == "2.0.0"
    assert "arm <model> & co" in (xml.findtext("description") or "")
    maintainer = xml.find("maintainer")
    assert maintainer is not None and "@" in (maintainer.get("email") or "")
    assert {"kairo_ros", "kairo_interfaces"} <= {e.text for e in xml.findall("exec_depend")}
    assert xml.findtext("export/build_type") == "ament_python"

    params = yaml.safe_load(found["config/params.yaml"])  # type: ignore[arg-type]
    assert params == {"/**/kairo_inference": {"ros__parameters": {
        "model_path": f"package://{pkg}/models/model.onnx", "intra_op_threads": 1,
        "input_qos": "sensor_data"}}}

    setup = ast.parse(found["setup.py"])  # type: ignore[arg-type]
    installed = {ast.literal_eval(n) for n in ast.walk(setup)
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for path in ["models/model.onnx", "models/model.onnx.sha256", "config/params.yaml",
                 "launch/model.launch.py", "package.xml", "README.md"]:
        assert path in installed, f"setup.py does not install {path}"
    assert "[install]\ninstall_scripts=$base/lib/" + pkg in found["setup.cfg"].decode()  # type: ignore[union-attr]

    launch = found["launch/model.launch.py"].decode()  # type: ignore[union-attr]
    ast.parse(launch)
    for needle in ['executable="kairo_inference"', '"log_level"', 'default_value="info"',
                   f'PACKAGE = "{pkg}"', '"joint_positions_topic"', '"/arm_controller/commands"']:
        assert needle in launch, needle
    readme = found["README.md"].decode()  # type: ignore[union-attr]
    assert "colcon build" in readme and "model.launch.py" in readme and "/joint_states" in readme


def test_archives_refuse_unsafe_paths() -> None:
    for bad in ["/abs", "a/../b", ""]:
        with pytest.raises(ValueError):
            tar_gz_bytes([Entry(bad, b"x")])
    with pytest.raises(ValueError):
        tar_gz_bytes([Entry("a", b"x"), Entry("a", b"y")])


# --- through the server -------------------------------------------------------------------
def test_ros2_pkg_export_serves_a_signed_verified_archive(api: httpx.Client, server: Server,
                                                           trained: dict[str, Any]) -> None:
    run = trained["manipulation"]
    mid = run["model_id"]
    answer = api.post(f"/v1/models/{mid}/export", json={"format": "ros2-pkg", "version": "v1"})
    assert answer.status_code == 200, answer.text
    exp = answer.json()
    assert exp["format"] == "ros2-pkg" and exp["version"] == "v1"
    assert set(exp) == {"download_url", "expires_at", "format", "size_mb", "sha256", "version"}
    assert exp["download_url"].startswith(f"{server.url}/downloads/{mid}_v1.tar.gz?expires=")
    blob = httpx.get(exp["download_url"], timeout=30)
    assert blob.status_code == 200
    assert hashlib.sha256(blob.content).hexdigest() == exp["sha256"]
    assert exp["size_mb"] == round(len(blob.content) / 1e6, 3)
    onnx_exp = api.post(f"/v1/models/{mid}/export", json={"format": "onnx", "version": "v1"}).json()
    onnx_bytes = httpx.get(onnx_exp["download_url"], timeout=30).content
    pkg = ros2_pkg.package_name(mid, "v1")
    found = members(blob.content)
    assert found[f"{pkg}/models/model.onnx"][1] == onnx_bytes
    stated = f"{onnx_exp['sha256']}  model.onnx\n".encode()
    assert found[f"{pkg}/models/model.onnx.sha256"][1] == stated
    assert b"/joint_states" in (found[f"{pkg}/README.md"][1] or b"")

    again = api.post(f"/v1/models/{mid}/export", json={"format": "ros2-pkg", "version": "v1"})
    assert again.json()["sha256"] == exp["sha256"], "a second export gives the same archive"
    old_link = httpx.get(exp["download_url"], timeout=30)
    assert old_link.content == blob.content, "links handed out earlier still work"

    tampered = exp["download_url"].replace(".tar.gz", ".onnx")
    assert httpx.get(tampered, timeout=30).status_code == 403
    err = api.post(f"/v1/models/{mid}/export", json={"format": "ros2-pkg", "version": "v99"})
    assert err.status_code == 404 and err.json()["error"]["code"] == "not_found"
