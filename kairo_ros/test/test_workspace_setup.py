"""The workspace's own guards: a broken interface fails the build loudly, and
`make setup` stops with a message naming what is missing; each ROS
distro from the wheels (ROS_DISTRO_WHEELS) is checked by name."""

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


# --- ROS_DISTRO_WHEELS: which distro's wheels, each in its own venv and trees ---------------------
def test_setup_and_env_refuse_an_unknown_distro_naming_the_known_ones() -> None:
    for command in (["bash", str(SETUP)], ["bash", "-c", f"source {ROOT / 'env.sh'}"]):
        result = subprocess.run(command, env={**os.environ, "ROS_DISTRO_WHEELS": "humble"},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0, command
        assert "ROS_DISTRO_WHEELS='humble'" in result.stderr and "jazzy" in result.stderr \
            and "kilted" in result.stderr, result.stderr


def test_setup_refuses_a_shell_with_the_other_distros_venv_active() -> None:
    # Building Kilted from a shell that sourced Jazzy's env.sh would mix the two distros' paths.
    result = run_setup({**os.environ, "ROS_DISTRO_WHEELS": "kilted", "VIRTUAL_ENV": str(ROOT / ".venv")})
    assert result.returncode != 0
    assert str(ROOT / ".venv") in result.stderr and "open a new shell" in result.stderr


def test_env_names_the_setup_command_of_a_distro_not_set_up(tmp_path: pathlib.Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "env.sh", tmp_path / "env.sh")
    shutil.copy(ROOT / "scripts" / "distro.sh", tmp_path / "scripts" / "distro.sh")
    clean = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    advice = {"jazzy": "run 'make setup' in", "kilted": "run 'make setup ROS_DISTRO_WHEELS=kilted' in"}
    for distro in ("jazzy", "kilted"):
        result = subprocess.run(["bash", "-c", f"source {tmp_path / 'env.sh'} && echo sourced"],
                                env={**clean, "ROS_DISTRO_WHEELS": distro}, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "sourced" not in result.stdout
        assert f"the {distro} workspace is not set up" in result.stderr, result.stderr
        assert advice[distro] in result.stderr, result.stderr
