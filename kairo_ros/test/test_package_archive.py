"""Safe unpacking of package archives, against hostile tar files built here."""

from __future__ import annotations

import io
import os
import pathlib
import tarfile
from collections.abc import Callable

import pytest

from kairo_ros.inference.errors import ConfigError
from kairo_ros.inference.package_uri import resolve_model_path
from kairo_ros.manager.package_archive import Limits, UnsafeArchiveError, extract_package

PKG = "kairo_model_abc123_v2"
GOOD = {f"{PKG}/package.xml": b"<package format='3'/>", f"{PKG}/models/model.onnx": b"\x08\x07" * 500,
        f"{PKG}/resource/{PKG}": b""}

Tweak = Callable[[tarfile.TarInfo], None]


def archive(path: pathlib.Path, files: dict[str, bytes], extra: list[tuple[tarfile.TarInfo, bytes | None]] = (),
            mode: str = "w:gz") -> pathlib.Path:
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", **attrs: object) -> tuple[
        tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def tree(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def dirs(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(where archives are built, the output dir inside a fence dir that must stay empty otherwise)."""
    built = tmp_path / "built"
    built.mkdir()
    out = tmp_path / "fence" / "out"
    out.mkdir(parents=True)
    return built, out


def test_a_good_archive_unpacks_whole(dirs: tuple[pathlib.Path, pathlib.Path]) -> None:
    built, out = dirs
    exe = entry(f"{PKG}/bin/tool", data=b"#!/bin/sh\n", mode=0o4777, uid=0, uname="root")
    path = extract_package(archive(built / "a.tar.gz", GOOD, [exe]), out)
    assert path == out / PKG
    assert tree(out) == [PKG, f"{PKG}/bin", f"{PKG}/bin/tool", f"{PKG}/models", f"{PKG}/models/model.onnx",
                         f"{PKG}/package.xml", f"{PKG}/resource", f"{PKG}/resource/{PKG}"]
    assert (path / "models" / "model.onnx").read_bytes() == GOOD[f"{PKG}/models/model.onnx"]
    assert (path / "bin" / "tool").stat().st_mode & 0o7777 == 0o755, "no setuid, no world write"
    assert (path / "package.xml").stat().st_mode & 0o7777 == 0o644


def test_an_existing_package_is_replaced_only_by_a_complete_one(dirs: tuple[pathlib.Path, pathlib.Path]) -> None:
    built, out = dirs
    (out / PKG).mkdir()
    (out / PKG / "stale.txt").write_text("old")
    bad = archive(built / "bad.tar.gz", GOOD, [entry("../evil")])
    with pytest.raises(UnsafeArchiveError):
        extract_package(bad, out)
    assert tree(out) == [PKG, f"{PKG}/stale.txt"], "a refused archive leaves the old package as it was"
    extract_package(archive(built / "good.tar.gz", GOOD), out)
    assert not (out / PKG / "stale.txt").exists() and (out / PKG / "package.xml").is_file()
    assert sorted(p.name for p in out.iterdir()) == [PKG], "no temporary directory left"


@pytest.mark.parametrize(("extra", "says"), [
    ([entry(f"{PKG}/../../evil")], "'..'"),
    ([entry("../evil")], "'..'"),
    ([entry("/tmp/evil")], "absolute"),
    ([entry(f"/{PKG}/x")], "absolute"),
    ([entry(f"{PKG}/./x")], "'.'"),
    ([entry(f"{PKG}//x")], "empty"),
    ([entry(f"{PKG}/link", tarfile.SYMTYPE, linkname="/etc/passwd")], "symlink"),
    ([entry(f"{PKG}/link", tarfile.SYMTYPE, linkname="../../x")], "symlink"),
    ([entry(f"{PKG}/hard", tarfile.LNKTYPE, linkname=f"{PKG}/package.xml")], "hardlink"),
    ([entry(f"{PKG}/dev", tarfile.CHRTYPE, devmajor=1, devminor=3)], "device"),
    ([entry(f"{PKG}/blk", tarfile.BLKTYPE, devmajor=8, devminor=0)], "device"),
    ([entry(f"{PKG}/fifo", tarfile.FIFOTYPE)], "fifo"),
    ([entry(f"{PKG}/sparse", tarfile.GNUTYPE_SPARSE)], "not a regular file"),
    ([entry("other_pkg/package.xml")], "outside the package directory"),
    ([entry(f"{PKG}/package.xml")], "twice"),
])
def test_hostile_entries_are_refused_and_nothing_is_written(
        dirs: tuple[pathlib.Path, pathlib.Path], extra: list[tuple[tarfile.TarInfo, bytes | None]],
        says: str) -> None:
    built, out = dirs
    with pytest.raises(UnsafeArchiveError, match=says):
        extract_package(archive(built / "a.tar.gz", GOOD, extra), out)
    assert tree(out.parent) == ["out"], "nothing written in or beside the output dir"
    assert not (built.parent / "evil").exists() and not pathlib.Path("/tmp/evil").exists()


def test_hostile_first_entries_and_bad_package_names(dirs: tuple[pathlib.Path, pathlib.Path]) -> None:
    built, out = dirs
    for name, says in [("../evil", "'..'"), ("/etc/evil", "absolute"), ("Bad-Name/package.xml", "package name"),
                       (".hidden/package.xml", "package name")]:
        with pytest.raises(UnsafeArchiveError, match=says):
            extract_package(archive(built / "a.tar.gz", {name: b"x", **GOOD}), out)
    with pytest.raises(UnsafeArchiveError, match="package.xml"):
        extract_package(archive(built / "b.tar.gz", {f"{PKG}/README.md": b"x"}), out)
    with pytest.raises(UnsafeArchiveError, match="empty"):
        extract_package(archive(built / "c.tar.gz", {}), out)
    assert tree(out.parent) == ["out"]


def test_bombs_and_floods_are_refused(dirs: tuple[pathlib.Path, pathlib.Path]) -> None:
    built, out = dirs
    bomb = archive(built / "bomb.tar.gz", {**GOOD, f"{PKG}/zeros": bytes(20 << 20)})  # 20 MiB of zeros
    assert bomb.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="expands beyond"):
        extract_package(bomb, out)
    with pytest.raises(UnsafeArchiveError, match="expands beyond"):
        extract_package(archive(built / "big.tar.gz", GOOD), out, Limits(max_bytes=100))
    flood = archive(built / "flood.tar.gz", {**GOOD, **{f"{PKG}/f{i}": b"" for i in range(60)}})
    with pytest.raises(UnsafeArchiveError, match="more than 50 entries"):
        extract_package(flood, out, Limits(max_entries=50))
    assert tree(out.parent) == ["out"]


def test_damaged_archives_are_refused(dirs: tuple[pathlib.Path, pathlib.Path]) -> None:
    built, out = dirs
    whole = archive(built / "a.tar.gz", {**GOOD, f"{PKG}/data": os.urandom(200_000)}).read_bytes()
    cases = {"truncated": whole[: len(whole) // 2], "garbage": b"not an archive at all" * 10,
             "flipped": whole[:100] + bytes([whole[100] ^ 0xFF]) + whole[101:]}
    plain = archive(built / "plain.tar", GOOD, mode="w").read_bytes()
    cases["not gzip"] = plain
    for name, data in cases.items():
        path = built / f"{name.replace(' ', '_')}.tar.gz"
        path.write_bytes(data)
        with pytest.raises(UnsafeArchiveError, match="damaged or truncated"):
            extract_package(path, out)
        assert tree(out.parent) == ["out"], name


# --- package:// model paths -----------------------------------------------------------------------
def test_package_uris_resolve_in_the_share_directory(tmp_path: pathlib.Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tmp_path / "install"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / PKG).write_text("")
    (prefix / "share" / PKG).mkdir()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert resolve_model_path(f"package://{PKG}/models/model.onnx") == str(
        prefix / "share" / PKG / "models" / "model.onnx")
    assert resolve_model_path("/opt/models/arm.onnx") == "/opt/models/arm.onnx"
    with pytest.raises(ConfigError, match="not installed.*colcon"):
        resolve_model_path("package://kairo_model_nope_v1/models/model.onnx")
    for bad in [f"package://{PKG}", f"package://{PKG}/", f"package://{PKG}/../../etc/passwd", "package:///x"]:
        with pytest.raises(ConfigError, match="model_path"):
            resolve_model_path(bad)
