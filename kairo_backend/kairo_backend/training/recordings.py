"""Datasets from rosbag2 recordings (docs/api.md, "Datasets from rosbag2 recordings").

A recording (a bag directory, a single `.mcap`, or a `.zip` / `.tar.gz` of a
bag directory) is read with `rosbags` (no ROS here), its messages are aligned
into samples by `kairo_features.alignment.Aligner` (the recorder's code), and
the samples are appended to one raw file per array; the `.npz` is then
written from those files. Memory stays flat in the recording's length: one
message, the Aligner's delay window and a chunk of samples at a time.

Untrusted input: archive members are extracted only when they are regular
files with relative paths, bounded in count and size; a recording that
cannot be read is a 422 with the reason; nothing is stored unless the whole
import succeeds (the `.npz` is written aside and renamed, the row inserted last).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import yaml

from kairo_backend.errors import PayloadTooLarge, ValidationFailed
from kairo_backend.training.datasets import MIN_SAMPLES, zip_directory_size
from kairo_features.schema import ANY_LENGTH

if TYPE_CHECKING:
    from kairo_backend.store.rows import DatasetRow

__all__ = ["MAX_ARCHIVE_MEMBERS", "Recording", "import_recording", "open_recording",
           "sniff_upload"]

MAX_ARCHIVE_MEMBERS = 64
MCAP_MAGIC = b"\x89MCAP0\r\n"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK"
SQLITE_MAGIC = b"SQLite format 3\x00"
METADATA = "metadata.yaml"
COPY_CHUNK = 1 << 20
WORKDIR_PREFIX = ".import-"  # in the datasets directory: the .npz is renamed, not copied
ABANDONED_AFTER_S = 24 * 3600
FLUSH_BYTES = 1 << 20  # samples buffered (with their objects' overhead) before a write
BYTES_OBJECT_OVERHEAD = 64  # a bytes object and its list slot, beyond its data
HINT = ("send a rosbag2 recording: a .mcap file, or a .zip or .tar.gz of the bag directory "
        "(metadata.yaml and its .mcap or .db3 files)")


def sniff_upload(file: IO[bytes]) -> str:
    """What an uploaded file is, from its content: `npz`, `mcap`, `zip` (a bag
    directory), `tar.gz`, or `unknown`."""
    file.seek(0)
    head = file.read(len(MCAP_MAGIC))
    file.seek(0)
    if head.startswith(MCAP_MAGIC):
        return "mcap"
    if head.startswith(GZIP_MAGIC):
        return "tar.gz"
    if head.startswith(ZIP_MAGIC):
        try:
            entries, _ = zip_directory_size(file)
            if entries > MAX_ARCHIVE_MEMBERS:
                return "npz"  # read_npz refuses it with the member count
            file.seek(0)
            with zipfile.ZipFile(file) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return "npz"  # read_npz says why it is unreadable
        finally:
            file.seek(0)
        if any(PurePosixPath(n).name == METADATA for n in names):
            return "zip"
        return "npz"
    return "unknown"


# --- archives ---------------------------------------------------------------


class _Budget:
    """Members and bytes an extraction may still write."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.members = 0

    def member(self) -> None:
        """One more member; refused over MAX_ARCHIVE_MEMBERS."""
        self.members += 1
        if self.members > MAX_ARCHIVE_MEMBERS:
            raise ValidationFailed(f"file: the archive holds more than {MAX_ARCHIVE_MEMBERS} "
                                   f"files; a bag directory holds metadata.yaml and its "
                                   f"storage files")

    def add(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise PayloadTooLarge(f"file: the archive holds over {self.max_bytes / 1e6:g} MB "
                                  "once extracted, over the limit (kairo-backend serve "
                                  "--max-dataset-mb)")


def _safe_relative(name: str) -> PurePosixPath:
    """An archive member's path, refused unless it stays inside the extraction directory."""
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or \
            (path.parts and ":" in path.parts[0]):
        raise ValidationFailed(f"file: archive member {name!r} has an absolute path or "
                               "'..'; archive the bag directory with relative paths")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts:
        raise ValidationFailed(f"file: archive member {name!r} has an empty path")
    return PurePosixPath(*parts)


def _copy(source: IO[bytes], target: Path, budget: _Budget) -> None:
    with target.open("xb") as out:
        while chunk := source.read(COPY_CHUNK):
            budget.add(len(chunk))
            out.write(chunk)


def _extract_member(name: str, regular: bool, size: int, open_member: Callable[[], IO[bytes] | None],
                    into: Path, budget: _Budget) -> None:
    """One archive member (zip or tar), checked before a byte of it is unpacked."""
    rel = _safe_relative(name)
    if not regular:
        raise ValidationFailed(f"file: archive member {name!r} is not a regular file (a link or a "
                               "device); archive the bag's files themselves")
    budget.member()
    if budget.bytes + size > budget.max_bytes:
        budget.add(size)  # raises before anything is unpacked
    target = into / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    source = open_member()
    assert source is not None  # a regular file
    with source:
        _copy(source, target, budget)


def _extract_zip(file: IO[bytes], into: Path, budget: _Budget) -> None:
    entries, _ = zip_directory_size(file)
    if entries > MAX_ARCHIVE_MEMBERS:  # refused before zipfile parses the whole directory
        budget.members = entries - 1
        budget.member()
    file.seek(0)
    with zipfile.ZipFile(file) as zf:
        for info in zf.infolist():
            if info.is_dir():
                _safe_relative(info.filename)
                continue
            regular = stat.S_IFMT(info.external_attr >> 16) in (0, stat.S_IFREG)  # no type bits: a plain file
            _extract_member(info.filename, regular, info.file_size, functools.partial(zf.open, info), into, budget)


def _extract_tar(file: IO[bytes], into: Path, budget: _Budget) -> None:
    file.seek(0)
    with tarfile.open(fileobj=file, mode="r|gz") as tf:
        for member in tf:
            if member.isdir():
                _safe_relative(member.name)
                continue
            _extract_member(member.name, member.isreg(), member.size,
                            functools.partial(tf.extractfile, member), into, budget)


def _bag_directory(root: Path) -> Path:
    """The directory holding metadata.yaml: the archive's top, or its one directory."""
    if (root / METADATA).is_file():
        return root
    found = [p.parent for p in root.rglob(METADATA)]
    if len(found) != 1 or found[0].parent != root:
        raise ValidationFailed(f"file: the archive must hold one bag directory with a "
                               f"{METADATA} at its top or one level down (found {len(found)}); "
                               f"{HINT}")
    return found[0]


# --- opening ------------------------------------------------------------------


@dataclass
class Recording:
    """A recording on disk, ready for rosbags: a bag directory or a single .mcap file."""

    path: Path
    file_name: str
    storage: str  # "mcap" or "sqlite3"


def _check_metadata(bag: Path) -> str:
    """The storage files metadata.yaml names must be plain files inside the bag directory
    (rosbags would open whatever path it names), and not whole-file compressed (rosbags
    would decompress them to a temporary file of unbounded size)."""
    try:
        with (bag / METADATA).open("rb") as f:
            doc = yaml.safe_load(f.read(1 << 20))
        info = doc["rosbag2_bagfile_information"]
        files = info.get("relative_file_paths") or []
        mode = str(info.get("compression_mode") or "").lower()
        storage = str(info.get("storage_identifier") or "")
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"file: {METADATA} is not rosbag2 metadata ({exc}); {HINT}") from exc
    if not isinstance(files, list) or not files:
        raise ValidationFailed(f"file: {METADATA} lists no storage files; {HINT}")
    for name in files:
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ValidationFailed(f"file: {METADATA} names storage file {name!r}, which is "
                                   "not a file of the bag directory")
        path = bag / name
        if path.is_symlink() or not path.is_file():
            raise ValidationFailed(f"file: {METADATA} names storage file {name!r}, which the "
                                   "bag directory does not hold (truncated archive?)")
    if mode == "file":
        raise ValidationFailed("file: the bag is compressed file by file; decompress it "
                               "(ros2 bag convert) or record with per-message or MCAP chunk "
                               "compression")
    if storage not in ("mcap", "sqlite3"):
        raise ValidationFailed(f"file: storage {storage!r} is not supported; record with MCAP "
                               "(the default) or SQLite3 storage")
    return storage


def open_recording(stack: ExitStack, source: Path | IO[bytes], workdir: Path, *,
                   file_name: str, max_extract_bytes: int) -> Recording:
    """A recording ready to read, from a path (bag directory, .mcap, archive) or an
    uploaded file; archives are extracted into `workdir` (the caller removes it)."""
    if isinstance(source, Path):
        if source.is_dir():
            return Recording(source, file_name, _check_metadata(source))
        if source.suffix == ".mcap" and source.is_file():
            return Recording(source, file_name, "mcap")  # rosbags opens it where it is
        f = stack.enter_context(source.open("rb"))
        return open_recording(stack, f, workdir, file_name=file_name,
                              max_extract_bytes=max_extract_bytes)
    kind = sniff_upload(source)
    budget = _Budget(max_extract_bytes)
    try:
        if kind == "mcap":
            # rosbags opens storage by path and suffix: the upload gets one
            target = workdir / "recording.mcap"
            source.seek(0)
            _copy(source, target, _Budget(1 << 62))
            return Recording(target, file_name, "mcap")
        extracted = workdir / "bag"
        extracted.mkdir()
        if kind == "zip":
            _extract_zip(source, extracted, budget)
        elif kind == "tar.gz":
            _extract_tar(source, extracted, budget)
        elif kind == "npz":
            raise ValidationFailed(f"file: an .npz dataset, not a recording; {HINT}")
        else:
            head = source.read(16)
            source.seek(0)
            what = "a SQLite3 file alone (the bag's metadata.yaml is needed too)" \
                if head == SQLITE_MAGIC else "neither an .npz, an .mcap, a .zip nor a .tar.gz"
            raise ValidationFailed(f"file: {what}; send an .npz dataset (numpy.savez) or {HINT[5:]}")
    except (ValidationFailed, PayloadTooLarge):
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, ValueError,
            NotImplementedError, RuntimeError, KeyError) as exc:
        raise ValidationFailed(f"file: a damaged or truncated archive ({exc}); {HINT}") from exc
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise ValidationFailed(f"file: the archive holds {Path(exc.filename).name} twice, "
                               "or as a file and a directory") from exc
    bag = _bag_directory(extracted)
    return Recording(bag, file_name, _check_metadata(bag))



# --- reading and aligning -----------------------------------------------------


class _SampleFiles:
    """The samples, appended to one raw file per dataset array in chunks; then the .npz."""

    def __init__(self, workdir: Path, arrays: dict[str, tuple[int, ...]], *,
                 max_samples: int, max_bytes: int) -> None:
        self.shapes = {n: s for n, s in arrays.items() if ANY_LENGTH not in s}
        # arrays of any length per sample (detection labels and boxes): a few values per
        # object, kept in memory and padded to the longest at the end
        self.ragged: dict[str, tuple[tuple[int, ...], list[np.ndarray]]] = {
            n: (s, []) for n, s in arrays.items() if ANY_LENGTH in s}
        self.dtypes = {name: np.dtype(np.int64 if name == "labels" else np.float32)
                       for name in arrays}
        self.paths = {name: workdir / f"{name}.raw" for name in self.shapes}
        self.buffers: dict[str, list[bytes]] = {name: [] for name in self.shapes}
        self.sample_bytes = sum(abs(int(np.prod(shape))) * self.dtypes[name].itemsize
                                for name, shape in arrays.items())
        self.flush_every = max(1, FLUSH_BYTES // (self.sample_bytes
                                                  + BYTES_OBJECT_OVERHEAD * len(arrays)))
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.count = 0
        self.buffered = 0  # samples in the buffers
        for path in self.paths.values():
            path.write_bytes(b"")

    def append(self, values: dict[str, np.ndarray]) -> None:
        self.count += 1
        if self.count > self.max_samples:
            raise PayloadTooLarge(f"file: the recording gives over {self.max_samples} samples, "
                                  "over the limit (kairo-backend serve --max-samples)")
        if self.count * self.sample_bytes > self.max_bytes:
            raise PayloadTooLarge(f"file: the recording's samples hold over "
                                  f"{self.max_bytes / 1e6:g} MB, over the limit "
                                  "(kairo-backend serve --max-dataset-mb)")
        for name, buffer in self.buffers.items():
            buffer.append(values[name].astype(self.dtypes[name], copy=False).tobytes())
        for name, (shape, rows) in self.ragged.items():
            rows.append(np.asarray(values[name], self.dtypes[name]).reshape(-1, *shape[1:]))
        self.buffered += 1
        if self.buffered >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        for name, buffer in self.buffers.items():
            if buffer:
                with self.paths[name].open("ab") as f:
                    f.write(b"".join(buffer))
                buffer.clear()
        self.buffered = 0

    def write_npz(self, target: Path) -> None:
        """The arrays as an .npz that numpy.load reads, written from the raw files in chunks."""
        self.flush()
        with zipfile.ZipFile(target, "x", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, shape in self.shapes.items():
                header = {"descr": np.lib.format.dtype_to_descr(self.dtypes[name]),
                          "fortran_order": False, "shape": (self.count, *shape)}
                with zf.open(f"{name}.npy", "w", force_zip64=True) as out, \
                        self.paths[name].open("rb") as raw:
                    np.lib.format.write_array_header_2_0(out, header)  # type: ignore[no-untyped-call]
                    shutil.copyfileobj(raw, out, COPY_CHUNK)
            for name, (shape, rows) in self.ragged.items():
                longest = max([len(r) for r in rows] + [1])
                padded = np.full((self.count, longest, *shape[1:]), -1 if name == "labels" else 0,
                                 self.dtypes[name])
                for i, r in enumerate(rows):
                    padded[i, :len(r)] = r
                with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, padded, allow_pickle=False)


@dataclass
class ImportResult:
    samples: int
    source: dict[str, Any]
    dropped: dict[str, int] = field(default_factory=dict)


@functools.cache
def _known_types() -> Any:
    """The ROS 2 Jazzy types rosbags ships: for bags that hold no definitions (SQLite3)."""
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


def _deserializer(conn: Any) -> tuple[Callable[[bytes], Any], bool]:
    """Deserializes a connection's messages, from the recording's own definition where it
    holds one, else from the known types (a 422 naming the type when neither can); and
    whether the type has a std_msgs/Header (its stamp is the message's)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    msgtype = conn.msgtype
    serialization = getattr(conn.ext, "serialization_format", "cdr")
    if serialization not in ("cdr", "", None):
        raise ValidationFailed(f"file: topic {conn.topic} is serialized as "
                               f"{serialization!r}; only CDR (ROS 2) is read")
    definition = conn.msgdef
    try:
        if definition.format == MessageDefinitionFormat.MSG and definition.data:
            types = get_types_from_msg(definition.data, msgtype)
        elif definition.format == MessageDefinitionFormat.IDL and definition.data:
            types = {}
            sep = "=" * 80 + "\n"
            for part in definition.data.split(sep):
                if part.startswith("IDL: "):
                    part = part.split("\n", 1)[1]
                if part.strip():
                    types.update(get_types_from_idl(part))
        else:
            types = None
        if types is None:
            store = _known_types()
        else:
            store = get_typestore(Stores.EMPTY)
            store.register(types)
    except Exception as exc:  # a hostile definition: the parser's error, whatever it is
        raise ValidationFailed(f"file: message type {msgtype} (topic {conn.topic}): the "
                               f"recording's definition of it cannot be read ({exc})") from exc
    if msgtype not in store.fielddefs:
        raise ValidationFailed(
            f"file: message type {msgtype} (topic {conn.topic}) cannot be decoded: the "
            "recording holds no definition of it and the backend does not know it (ROS 2 "
            "Jazzy's standard types); record it with MCAP storage on a machine where its "
            "package is installed, so that the bag stores its definition")
    fields = store.fielddefs[msgtype][1]
    stamped = any(name == "header" and desc[1] == "std_msgs/msg/Header" for name, desc in fields
                  if isinstance(desc, tuple) and len(desc) > 1)
    return functools.partial(store.deserialize_cdr, typename=msgtype), stamped


def _damaged(what: str, exc: BaseException) -> ValidationFailed:
    return ValidationFailed(f"file: the recording is damaged or truncated ({what}: "
                            f"{type(exc).__name__}: {exc}); {HINT}")


def _messages(reader: Any, connections: list[Any]) -> Iterator[tuple[Any, int, bytes]]:
    """The reader's messages; anything the library raises on damaged bytes is a 422."""
    try:
        iterator = iter(reader.messages(connections=connections))
    except Exception as exc:
        raise _damaged("reading its messages", exc) from exc
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # the library's, on bytes it cannot parse
            raise _damaged("reading its messages", exc) from exc
        yield item


def import_recording(recording: Recording, features_doc: dict[str, Any], workdir: Path,
                     target: Path, *, max_samples: int, max_bytes: int) -> ImportResult:
    """Align the recording's messages into samples and write them to `target` (.npz,
    created; the caller renames it into place). 422 for a recording that cannot be read,
    413 over the limits."""
    from rosbags.rosbag2 import Reader

    from kairo_features.alignment import Aligner
    from kairo_features.fields import FieldError, ReadValues, entry_reader
    from kairo_features.schema import FeaturesError, parse_features

    try:
        features = parse_features(features_doc)
    except FeaturesError as exc:
        raise ValidationFailed(f"features: {exc}") from exc
    with ExitStack() as stack:
        try:
            reader = Reader(recording.path)
            reader.open()
            stack.callback(reader.close)
            connections = list(reader.connections)
            topics = reader.topics
            # rosbags' end_time is just after the last message (exclusive)
            start_ns = int(reader.start_time)
            end_ns = max(start_ns, int(reader.end_time) - 1)
            messages = int(reader.message_count)
        except Exception as exc:  # the library's, on a file it cannot parse
            raise _damaged("opening it", exc) from exc

        by_topic: dict[str, list[Any]] = {}
        for conn in connections:
            by_topic.setdefault(conn.topic, []).append(conn)
        # topic -> [(entry name, read values)]
        readers: dict[str, list[tuple[str, Callable[[Any], ReadValues]]]] = {}
        for entry in features.entries:
            conns = by_topic.get(entry.topic)
            if not conns:
                raise ValidationFailed(
                    f"features: topic {entry.topic} ({entry.name}) is not in the recording; it "
                    f"holds {', '.join(sorted(by_topic)) or 'no topics'}")
            for conn in conns:
                if conn.msgtype != entry.msg_type:
                    raise ValidationFailed(
                        f"features: {entry.name} reads {entry.msg_type} from {entry.topic}, "
                        f"but the recording has {conn.msgtype} there")
            readers.setdefault(entry.topic, []).append(
                (entry.name, entry_reader(entry, features.classes)))
        wanted = [c for topic in readers for c in by_topic[topic]]
        # per connection: its decoder, whether its type has a header, the entries it feeds
        plan = {c.id: (*_deserializer(c), readers[c.topic]) for c in wanted}

        aligner = Aligner(features)
        out = _SampleFiles(workdir, features.dataset_arrays(), max_samples=max_samples,
                           max_bytes=max_bytes)
        append = out.append
        add = aligner.add
        for conn, logged_ns, raw in _messages(reader, wanted):
            decode, stamped, entries = plan[conn.id]
            try:
                msg = decode(raw)
            except Exception:  # noqa: BLE001 - one message its definition does not describe
                for name, _ in entries:
                    for sample in aligner.add_unreadable(name, logged_ns):
                        append(sample.values)
                continue
            stamp = logged_ns
            if stamped:
                header = msg.header.stamp
                # an unset (zero) header stamp: the time the bag logged it
                stamp = header.sec * 1_000_000_000 + header.nanosec or logged_ns
            for name, read in entries:
                try:
                    values = read(msg)
                except (FieldError, ValueError, TypeError, AttributeError):
                    done = aligner.add_unreadable(name, stamp)
                else:
                    done = add(name, stamp, values)
                for sample in done:
                    append(sample.values)
        for sample in aligner.finish():
            append(sample.values)

        dropped = dict(sorted(aligner.dropped.items()))
        if out.count < MIN_SAMPLES:
            reasons = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "none dropped"
            raise ValidationFailed(
                f"file: the recording gives {out.count} samples, fewer than {MIN_SAMPLES} "
                f"(dropped: {reasons}); check the features' topics and that every output "
                "is published after its trigger")
        out.write_npz(target)
    source = {
        "kind": "rosbag2", "storage": recording.storage, "file": recording.file_name,
        "messages": messages, "start_ns": start_ns, "end_ns": end_ns,
        "duration_s": round(max(0, end_ns - start_ns) / 1e9, 6),
        "topics": [{"topic": t, "type": info.msgtype or "", "messages": int(info.msgcount)}
                   for t, info in sorted(topics.items())],
        "late": dict(sorted(aligner.late.items())),
    }
    return ImportResult(out.count, source, dropped)


def _remove_abandoned(datasets_dir: Path) -> None:
    """Work directories of imports a killed process left behind (a day old: no import
    still running takes that long)."""
    cutoff = time.time() - ABANDONED_AFTER_S
    for workdir in datasets_dir.glob(f"{WORKDIR_PREFIX}*"):
        with contextlib.suppress(OSError):
            if workdir.is_dir() and workdir.stat().st_mtime < cutoff:
                shutil.rmtree(workdir, ignore_errors=True)


def import_dataset(settings: Any, store: Any, ws: str, name: str,
                   source: Path | IO[bytes], features_doc: dict[str, Any], *,
                   file_name: str) -> DatasetRow:
    """A recording into a stored dataset: the route's and the CLI's one implementation.
    The dataset row is inserted only after its file is complete and in place."""
    from kairo_backend.core.util import new_id, now

    ds_id = new_id("ds_")
    final = settings.datasets_dir / f"{ds_id}.npz"
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(settings.datasets_dir)
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX, dir=settings.datasets_dir) as tmp, \
            ExitStack() as stack:
        workdir = Path(tmp)
        recording = open_recording(stack, source, workdir, file_name=file_name,
                                   max_extract_bytes=int(settings.max_dataset_mb * 1e6))
        partial = workdir / "dataset.npz"
        result = import_recording(recording, features_doc, workdir, partial,
                                  max_samples=settings.max_dataset_samples,
                                  max_bytes=int(settings.max_dataset_mb * 1e6))
        partial.replace(final)
    try:
        ds: DatasetRow = {"id": ds_id, "workspace_id": ws, "name": name, "task": features_doc["task"],
              "samples": result.samples, "features": features_doc, "path": str(final),
              "size_bytes": final.stat().st_size, "created_at": now(),
              "source": result.source, "dropped": result.dropped}
        store.insert_dataset(ds)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return ds

