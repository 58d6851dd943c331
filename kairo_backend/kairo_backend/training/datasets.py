"""Dataset files: an `.npz` holding one array per input/output name (numpy only).

Regression tasks: one float array per input and per output, `[N, *shape]`.
Detection: the image input `[N, C, H, W]` (uint8 0-255, or float in [0, 1]),
`labels` `[N, M]` (int class ids, -1 where an image has fewer than M objects)
and `boxes` `[N, M, 4]` (`center_x, center_y, size_x, size_y` in pixels).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from kairo_backend.errors import PayloadTooLarge, ValidationFailed
from kairo_features.schema import ANY_LENGTH, Features, FeaturesError, parse_features

MIN_SAMPLES = 10
MAX_ARRAYS = 64
MAX_DIRECTORY_BYTES = 1 << 20  # MAX_ARRAYS members with long names and extras fit well
_EOCD = struct.Struct("<4s4H2LH")  # zip end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
REAL_KINDS = "biuf"  # bool, signed and unsigned integers, floats
SAVE_HINT = "save the arrays with numpy.savez or numpy.savez_compressed"
# what a damaged or hostile archive raises while it is read
_UNREADABLE = (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error,
               NotImplementedError, RuntimeError, KeyError)


def load_arrays(source: Path | bytes) -> dict[str, np.ndarray]:
    """Read a stored dataset (checked when it was created; no pickles)."""
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                     allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValidationFailed(f"file: not a readable .npz archive ({exc})") from exc


def check_dtype(where: str, dtype: np.dtype[Any]) -> None:
    if dtype.kind not in REAL_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValidationFailed(f"{where}: dtype {dtype} is not supported; datasets hold real "
                               "numbers (float, int or bool arrays): convert it, e.g. "
                               "with .astype(numpy.float32)")


def read_npz(source: IO[bytes], *, max_bytes: int, max_samples: int) -> dict[str, np.ndarray]:
    """Read an untrusted `.npz` (no pickles).

    Every member's header (shape, dtype) and the archive's uncompressed sizes are
    checked against the limits before anything is decompressed, so a small
    archive declaring huge arrays costs a few header reads.
    """
    try:
        entries, directory_bytes = _directory_size(source)
        if entries > MAX_ARRAYS or directory_bytes > MAX_DIRECTORY_BYTES:
            raise ValidationFailed(f"file: the archive lists {entries} members "
                                   f"({directory_bytes} bytes of directory); a dataset holds "
                                   f"one array per input and output (at most {MAX_ARRAYS})")
        source.seek(0)
        with zipfile.ZipFile(source) as zf:
            members = _inspect(zf, max_bytes, max_samples)
            arrays = {}
            for name, info in members.items():
                with zf.open(info) as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
            return arrays
    except (PayloadTooLarge, ValidationFailed):
        raise
    except _UNREADABLE as exc:
        raise ValidationFailed(f"file: not a readable .npz archive ({exc}); {SAVE_HINT}") \
            from exc


def _directory_size(f: IO[bytes]) -> tuple[int, int]:
    """(members, bytes) of a zip's central directory, from its end records alone:
    zipfile would parse the whole directory (hundreds of bytes of memory per member)
    before its members could be counted."""
    f.seek(0, io.SEEK_END)
    size = f.tell()
    tail_len = min(size, _EOCD.size + 0xFFFF)  # the record ends with a comment <= 64 KiB
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise zipfile.BadZipFile("no end of central directory record")
    fields = _EOCD.unpack_from(tail, at)
    entries, directory = fields[4], fields[5]
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        # zip64: the larger record sits right before its locator (where zipfile reads it)
        record = size - tail_len + locator - _ZIP64_EOCD.size
        if record >= 0:
            f.seek(record)
            raw = f.read(_ZIP64_EOCD.size)
            if raw[:4] == b"PK\x06\x06":
                fields64 = _ZIP64_EOCD.unpack(raw)
                entries, directory = max(entries, fields64[7]), max(directory, fields64[8])
    return entries, directory


zip_directory_size = _directory_size  # also how a recording's archive is told from an .npz


def _inspect(zf: zipfile.ZipFile, max_bytes: int, max_samples: int) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if not infos:
        raise ValidationFailed(f"file: the .npz holds no arrays; {SAVE_HINT}")
    if len(infos) > MAX_ARRAYS:
        raise ValidationFailed(f"file: {len(infos)} members, more than {MAX_ARRAYS}; a dataset "
                               "holds one array per input and output")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise ValidationFailed(f"file: member {info.filename!r} is not a .npy array; "
                                   f"{SAVE_HINT}")
        name = info.filename[:-len(".npy")]
        where = f"file.{name}"
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValidationFailed(f"{where}: .npy format version {version} is not "
                                       f"supported; {SAVE_HINT}")
            header_bytes = f.tell()
        check_dtype(where, dtype)
        if any(d < 0 for d in shape):
            raise ValidationFailed(f"{where}: its header declares shape {list(shape)}; the "
                                   f"file is damaged: {SAVE_HINT}")
        if shape and shape[0] > max_samples:
            raise PayloadTooLarge(f"{where}: {shape[0]} samples, over the limit of "
                                  f"{max_samples} (kairo-backend serve --max-samples)")
        elements = 1
        for d in shape:
            elements *= d  # Python ints: an absurd shape cannot overflow
        declared = elements * dtype.itemsize
        if declared != info.file_size - header_bytes:
            raise ValidationFailed(f"{where}: its header declares shape {list(shape)} "
                                   f"({declared} bytes) but the member holds "
                                   f"{info.file_size - header_bytes} bytes; the file is "
                                   f"damaged: {SAVE_HINT}")
        total += declared
        if total > max_bytes:
            raise PayloadTooLarge(f"file: the arrays hold over {total / 1e6:.0f} MB "
                                  f"uncompressed, over the limit of {max_bytes / 1e6:g} MB "
                                  "(kairo-backend serve --max-dataset-mb)")
        members[name] = info
    return members


def check_features(doc: Any, task: str | None = None) -> dict[str, Any]:
    """A features document checked by the one parser (kairo_features, docs/features.md), normalised."""
    if not isinstance(doc, dict):
        raise ValidationFailed("features: must be a JSON object")
    try:
        return parse_features(doc, task=task).to_document()
    except FeaturesError as exc:
        raise ValidationFailed(str(exc)) from None


def check_arrays(arrays: dict[str, np.ndarray], features: dict[str, Any]) -> int:
    """Check the arrays against the features description; return the sample count."""
    parsed: Features = parse_features(features)
    expected = parsed.dataset_arrays()
    needed = list(expected)
    missing = [n for n in needed if n not in arrays]
    if missing:
        raise ValidationFailed(
            f"file: missing array(s) {', '.join(missing)}; expected {', '.join(needed)}")
    counts = {n: int(arrays[n].shape[0]) if arrays[n].ndim else -1 for n in needed}
    n = counts[needed[0]]
    if any(c != n for c in counts.values()):
        raise ValidationFailed(f"file: arrays have different sample counts {counts}")
    if n < MIN_SAMPLES:
        raise ValidationFailed(f"file: needs at least {MIN_SAMPLES} samples, has {n}")
    lengths: set[int] = set()  # the ANY_LENGTH dims' length, the same in every array
    for name, shape in expected.items():
        arr = arrays[name]
        got = tuple(arr.shape[1:])
        if len(got) != len(shape) or any(s not in (g, ANY_LENGTH) for g, s in zip(got, shape, strict=True)):
            wanted = ["M" if s == ANY_LENGTH else s for s in shape]
            raise ValidationFailed(
                f"file.{name}: per-sample shape {list(got)} does not match features shape "
                f"{wanted}" + (" (M: the most objects in an image, -1 labels pad)"
                               if ANY_LENGTH in shape else ""))
        lengths.update(g for g, s in zip(got, shape, strict=True) if s == ANY_LENGTH)
        check_dtype(f"file.{name}", arr.dtype)
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValidationFailed(f"file.{name}: contains NaN or infinite values")
    if len(lengths) > 1:
        raise ValidationFailed(f"file: labels and boxes disagree on objects per image "
                               f"({sorted(lengths)}); pad both to the same M")
    if parsed.is_detection:
        _check_detection(arrays, parsed)
    return n


def _check_detection(arrays: dict[str, np.ndarray], parsed: Features) -> None:
    image_name = parsed.inputs[0].name
    image = arrays[image_name]
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise ValidationFailed(f"file.{image_name}: dtype {image.dtype}; images are uint8 "
                               "(0-255) or float (0-1): convert with .astype(numpy.uint8)")
    if np.issubdtype(image.dtype, np.floating) and image.size and \
            (image.min() < 0 or image.max() > 1):
        raise ValidationFailed(f"file.{image_name}: float images hold values in [0, 1], these "
                               f"span {image.min():g}..{image.max():g}; divide by 255 or "
                               "store uint8")
    labels = arrays["labels"]
    n_classes = len(parsed.classes)
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and (
            labels.min() < -1 or labels.max() >= n_classes)):
        raise ValidationFailed(f"file.labels: must be integers in 0..{n_classes - 1} "
                               "(-1 pads an image with fewer objects)")
    sizes = arrays["boxes"][..., 2:][labels >= 0]
    if sizes.size and sizes.min() <= 0:
        raise ValidationFailed("file.boxes: every object's size_x and size_y must be > 0")


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> int:
    """Store compressed (written aside, then renamed); the file's size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return path.stat().st_size
