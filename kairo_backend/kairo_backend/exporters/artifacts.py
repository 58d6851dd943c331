"""Checks that a stored artifact is still the file training wrote, before it leaves.

A file is hashed again only when its size, inode or mtime changed since it
was last verified, so that serving a link many times costs one hash.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_CHUNK = 1 << 20
_verified: dict[str, tuple[tuple[int, int, int], str]] = {}  # path -> (stat key, sha256)
_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def corruption(path: Path, expected_sha256: str | None) -> str | None:
    """Why `path` cannot be served as the file whose sha256 is `expected_sha256`,
    or None when it matches. A missing file raises FileNotFoundError."""
    st = os.stat(path)
    if st.st_size == 0:
        return f"{path.name} is empty (0 bytes)"
    key = (st.st_size, st.st_ino, st.st_mtime_ns)
    with _lock:
        hit = _verified.get(str(path))
    if hit is not None and hit[0] == key:
        actual = hit[1]
    else:
        actual = file_sha256(path)
        with _lock:
            if len(_verified) > 4096:
                _verified.clear()
            _verified[str(path)] = (key, actual)
    if expected_sha256 is None or actual != expected_sha256:
        return (f"{path.name} has sha256 {actual[:12]}…, not the {str(expected_sha256)[:12]}… "
                "recorded when it was written")
    return None
