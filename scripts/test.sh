#!/usr/bin/env bash
# The tests of every package, one pytest run per package; prints one summary
# line and fails on any failure or when no test ran. ROS_DISTRO_WHEELS picks
# the workspace (scripts/distro.sh). kairo_backend and kairo_features have no
# ROS, so their tests give the same answer on every distro: they run with
# Jazzy, and Kilted runs only the ROS package's tests (kairo_ros/test).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
_kairo_root="$root"
# shellcheck source=distro.sh
. "$root/scripts/distro.sh" || exit 1
distro="$_kairo_distro"
results="$_kairo_results"
if [ "$distro" = jazzy ]; then
  suites=(kairo_features/test kairo_backend/tests kairo_ros/test)
else
  suites=(kairo_ros/test)
fi
set +u; source env.sh || exit 1; set -u
rm -rf "$results"; mkdir -p "$results"
status=0
for suite in "${suites[@]}"; do
  [ -d "$suite" ] || continue
  name="${suite%%/*}"
  echo "[test] $suite (ROS 2 $distro)"
  # shellcheck disable=SC2086
  (cd "$suite" && python -m pytest -p no:cacheprovider -q -rfE --junitxml="$results/$name.xml" ${PYTEST_ARGS:-} .) || status=1
done
echo "[test] ROS 2 $distro"
python "$root/scripts/test_summary.py" "$results" || status=1
exit $status
