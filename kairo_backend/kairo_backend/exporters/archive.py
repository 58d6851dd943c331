"""Deterministic .tar.gz archives: the same files give the same bytes, on any machine.

Entries are sorted, every mtime is fixed, owners are root with no names,
modes are 0644 (files) and 0755 (directories, executables), and the gzip
header carries no file name and no time.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z, as reproducible builds use


@dataclass(frozen=True)
class Entry:
    """One file of an archive: its path inside the archive and its bytes."""

    path: str
    data: bytes
    executable: bool = False


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tar_gz_bytes(entries: list[Entry]) -> bytes:
    """The archive of `entries`, with a directory entry for each parent directory."""
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate paths in an archive")
    for path in paths:
        if path.startswith("/") or ".." in path.split("/") or not path:
            raise ValueError(f"archive path {path!r} must be relative, without '..'")
    dirs = sorted({"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        members: list[tuple[str, tarfile.TarInfo, bytes | None]] = [
            (d + "/", _info(d, tarfile.DIRTYPE, 0o755), None) for d in dirs]
        members += [(e.path, _info(e.path, tarfile.REGTYPE, 0o755 if e.executable else 0o644,
                                   len(e.data)), e.data) for e in entries]
        for _key, info, data in sorted(members, key=lambda m: m[0]):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_atomically(data: bytes, dest: Path) -> None:
    """`dest` holds either its old content or all of `data`, never a part."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
