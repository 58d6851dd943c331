"""Unpack an exported ROS 2 package archive (.tar.gz) safely into a directory.

An archive from the network is hostile until proven otherwise. It is
refused, with nothing left behind, when it

- is not a readable gzip tar (damaged, truncated),
- has an entry with an absolute path, a `..` or `.` component or an empty one,
- has an entry that is not a regular file or a directory (symlink, hardlink,
  device, fifo, sparse file),
- has entries outside one top-level directory, or a top-level directory that
  is not a valid ROS package name, or no `package.xml` in it,
- has the same path twice,
- holds more than `max_entries` entries, or expands to more than `max_bytes`
  (by default 50 times the archive, at most 2 GiB).

Files are written with their own modes (0644, or 0755 when executable),
never their owners or times, into a temporary directory beside the target;
the package directory appears whole by a rename, replacing an existing one
of the same name only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass

from kairo_ros.api.errors import KairoError

MAX_ENTRIES = 10_000
MAX_RATIO = 50  # expanded bytes per archive byte
MAX_BYTES = 2 << 30  # whatever the archive's size
_PACKAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CHUNK = 1 << 16


class UnsafeArchiveError(KairoError):
    """The archive is damaged or tries to write where it must not; nothing was written."""

    code = "unsafe_archive"


@dataclass(frozen=True)
class Limits:
    max_entries: int = MAX_ENTRIES
    max_ratio: int = MAX_RATIO
    max_bytes: int = MAX_BYTES

    def bytes_for(self, archive_size: int) -> int:
        return min(self.max_bytes, self.max_ratio * max(archive_size, 1))


def extract_package(archive: pathlib.Path, dest_dir: pathlib.Path, limits: Limits = Limits()) -> pathlib.Path:
    """Unpack the one package directory of `archive` into `dest_dir`; its path there.

    Raises UnsafeArchiveError (nothing written) when the archive is refused,
    OSError when `dest_dir` cannot be written.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=dest_dir, prefix=".kairo-unpack-"))
    try:
        package = _unpack(archive, staging, limits.bytes_for(archive.stat().st_size), limits.max_entries)
        target = dest_dir / package
        _replace_dir(staging / package, target, staging)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: pathlib.Path, staging: pathlib.Path, max_bytes: int, max_entries: int) -> str:
    """Write the archive's entries under `staging`; the package name."""
    package = ""
    seen: set[str] = set()
    written = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > max_entries:
                    raise UnsafeArchiveError(f"the archive has more than {max_entries} entries")
                parts = _parts(member)
                if not package:
                    package = _package_name(parts[0])
                elif parts[0] != package:
                    raise UnsafeArchiveError(f"entry {member.name!r} lies outside the package directory "
                                             f"{package!r}; an archive holds one package")
                relative = "/".join(parts)
                if relative in seen:
                    raise UnsafeArchiveError(f"entry {member.name!r} appears twice")
                seen.add(relative)
                path = staging.joinpath(*parts)
                if member.isdir():
                    path.mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                written += member.size
                if written > max_bytes:
                    raise UnsafeArchiveError(f"the archive expands beyond {max_bytes} bytes; refusing it")
                _write_file(tar, member, path)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UnsafeArchiveError(f"the archive is damaged or truncated ({exc}); export it again") from None
    if not package:
        raise UnsafeArchiveError("the archive is empty")
    if not (staging / package / "package.xml").is_file():
        raise UnsafeArchiveError(f"the archive holds no {package}/package.xml: it is not a ROS 2 package")
    return package


def _parts(member: tarfile.TarInfo) -> list[str]:
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"entry {name!r} has an absolute path")
    parts = name.split("/")
    if member.isdir() and len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise UnsafeArchiveError(f"entry {name!r} has an empty, '.' or '..' path component")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        kind = ("a symlink" if member.issym() else "a hardlink" if member.islnk() else
                "a fifo" if member.isfifo() else "a device" if member.isdev() else
                "not a regular file or directory")
        raise UnsafeArchiveError(f"entry {name!r} is {kind}; only files and directories are accepted")
    return parts


def _package_name(top: str) -> str:
    if not _PACKAGE_NAME.match(top):
        raise UnsafeArchiveError(f"top-level directory {top!r} is not a valid ROS package name")
    return top


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: pathlib.Path) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise UnsafeArchiveError(f"entry {member.name!r} cannot be read")
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    mode = 0o755 if member.mode & 0o111 else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out, source:
        remaining = member.size
        while remaining > 0:
            chunk = source.read(min(_CHUNK, remaining))
            if not chunk:
                raise UnsafeArchiveError(f"entry {member.name!r} ends early: the archive is truncated")
            out.write(chunk)
            remaining -= len(chunk)
    os.chmod(path, mode)  # whatever the umask


def _replace_dir(new: pathlib.Path, target: pathlib.Path, staging: pathlib.Path) -> None:
    """Move `new` to `target`; an existing `target` is moved aside first and removed after."""
    if not target.exists() and not target.is_symlink():
        os.rename(new, target)
        return
    old = staging / ".previous"
    os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.rename(old, target)
        raise
