#!/usr/bin/env bash
# Every test of every package, one pytest run per package; prints one summary
# line and fails on any failure or when no test ran.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
set +u; source env.sh; set -u
results="$root/test-results"
rm -rf "$results"; mkdir -p "$results"
status=0
for suite in kairo_backend/tests kairo_ros/test; do
  [ -d "$suite" ] || continue
  name="${suite%%/*}"
  echo "[test] $suite"
  (cd "$suite" && python -m pytest -p no:cacheprovider -q -rfE --junitxml="$results/$name.xml" ${PYTEST_ARGS:-} .) || status=1
done
python "$root/scripts/test_summary.py" "$results" || status=1
exit $status
