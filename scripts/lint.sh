#!/usr/bin/env bash
# ruff on every Python file of the project, mypy on each Python package.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
set +u; source env.sh; set -u
echo "[lint] ruff"
ruff check .
for pkg in kairo_features/kairo_features kairo_ros/kairo_ros kairo_backend/kairo_backend; do
  [ -d "$pkg" ] || continue
  echo "[lint] mypy $pkg"
  (cd "$(dirname "$pkg")" && mypy --config-file ../mypy.ini "$(basename "$pkg")")
done
