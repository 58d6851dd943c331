"""The workspace's own guards: a broken interface fails the build loudly, and
`make setup` stops with a message naming what is missing."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(os.environ["KAIRO_ROOT"])
SETUP = ROOT / "scripts" / "setup.sh"


def run_setup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in env.items() if k != "ROS_DISTRO"}  # the wheel path, as on CI
    return subprocess.run(["bash", str(SETUP)], env=clean, capture_output=True, text=True, timeout=60)


def test_a_broken_interface_definition_fails_the_build(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src" / "kairo_interfaces"
    shutil.copytree(ROOT / "kairo_interfaces", src)
    metrics = src / "msg" / "TrainingMetrics.msg"
    metrics.write_text(metrics.read_text().replace("float64 final_loss", "flaot64 final_loss"))
    build = subprocess.run(
        ["colcon", "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(tmp_path / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--event-handlers", "console_direct+"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert build.returncode != 0
    output = build.stdout + build.stderr
    assert "flaot64" in output and "TrainingMetrics" in output
    assert not (tmp_path / "install" / "kairo_interfaces" / "lib").exists()


def test_setup_refuses_a_python_that_is_not_3_11(tmp_path: pathlib.Path) -> None:
    fake = tmp_path / "python3.12"
    fake.write_text("#!/bin/sh\necho 3.12\n")
    fake.chmod(0o755)
    result = run_setup({**os.environ, "PYTHON": str(fake)})
    assert result.returncode != 0
    assert "need Python 3.11" in result.stderr and "3.12" in result.stderr


def test_setup_names_a_missing_compiler(tmp_path: pathlib.Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cmake", "make", "python3.11", "bash", "dirname", "cat", "sha256sum", "cut"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = run_setup({**os.environ, "PATH": str(bin_dir)})
    assert result.returncode != 0
    assert "no C compiler found" in result.stderr and "build-essential" in result.stderr
