"""Files a user gets (exported models, demo plots): the mode their umask gives, as `open()` would.

They are written whole through a temporary file and a rename, and
`tempfile.mkstemp` makes that file 0600 whatever the umask; the written
file gets `usual_file_mode()` before the rename.
"""

from __future__ import annotations

import os
import pathlib


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (other threads may create files)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no other way: set it and put it back at once
    os.umask(mask)
    return mask


def usual_file_mode() -> int:
    """0o666 less the umask: the mode a plain `open(path, 'w')` gives a new file."""
    return 0o666 & ~current_umask()
