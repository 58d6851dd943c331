"""Point the ROS wheels' CMake files at this interpreter's headers.

The ros-jazzy-* wheels were built under /opt/python/cp311-cp311 and name its
include and numpy directories in their CMake files; building an interface
package against them fails unless those paths are this venv's.
"""

import pathlib
import sys
import sysconfig

import numpy

BUILD_PREFIX = "/opt/python/cp311-cp311"
REPLACEMENTS = {
    f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    f"{BUILD_PREFIX}/include/python3.11": sysconfig.get_paths()["include"],
}


def main(venv: str) -> int:
    fixed = 0
    for path in pathlib.Path(venv, "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        if BUILD_PREFIX not in text:
            continue
        for old, new in REPLACEMENTS.items():
            text = text.replace(old, new)
        path.write_text(text, errors="surrogateescape")
        fixed += 1
    print(f"[setup] rewrote build paths in {fixed} CMake file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
