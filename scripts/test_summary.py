"""Add up the junit reports of every suite; fail when any failed or none ran.

`test_summary.py DIR [DIR ...]`: one line for all the reports in the given
directories (CI adds up Jazzy's and Kilted's).
"""

import pathlib
import sys
import xml.etree.ElementTree as ET


def main(results_dirs: list[str]) -> int:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    missing = [d for d in results_dirs if not any(pathlib.Path(d).glob("*.xml"))]
    for results_dir in results_dirs:
        for report in sorted(pathlib.Path(results_dir).glob("*.xml")):
            for suite in ET.parse(report).getroot().iter("testsuite"):
                for key in totals:
                    totals[key] += int(suite.get(key, 0))
    failed = totals["failures"] + totals["errors"]
    passed = totals["tests"] - failed - totals["skipped"]
    print(f"summary: {passed} passed, {failed} failed, {totals['skipped']} skipped")
    for results_dir in missing:
        print(f"summary: no test report in {results_dir}: those tests did not run", file=sys.stderr)
    if totals["tests"] == 0:
        print("summary: no test ran", file=sys.stderr)
        return 1
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
