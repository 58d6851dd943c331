"""The backend under a hostile client: bodies refused before they are read, bounded
memory, uploads checked before they are decompressed, no 500 from odd input.

Every test talks to a real server process over a real socket; memory is the
server's own peak (VmHWM in /proc/<pid>/status).
"""

from __future__ import annotations

import io
import json
import logging
import re
import select
import socket
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from conftest import Server, cli
from kairo_backend.core.config import Settings
from kairo_backend.main import create_app
from kairo_backend.training.demo import make_demo
from kairo_features.tasks import default_features

MB = 1_000_000
LIMITS = ["--max-upload-mb", "64", "--max-dataset-mb", "128", "--max-samples", "200000"]


# -- clients that stream without waiting, as an attacker would ----------------------------

def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident memory so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def _read_status(sock: socket.socket) -> tuple[int, bytes]:
    """The answer's status and what arrived of it: its headers, and its body up to Content-Length
    (the body may come in a segment of its own)."""
    data = b""
    sock.settimeout(60)

    def complete() -> bool:
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        return length is None or len(body) >= int(length.group(1))

    try:
        while not complete():
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ")[1]), data


def stream_post(url: str, path: str, total: int, headers: dict[str, str] | None = None,
                chunked: bool = False) -> tuple[int, int, bytes]:
    """POST `total` bytes of one JSON array, streamed in 1 MB writes, stopping as soon
    as an answer arrives; (status, bytes sent, answer)."""
    sock = _connect(url)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    sock.sendall((head + "\r\n").encode())
    piece = b"[" + b"0," * (MB // 2 - 1) + b"0"  # 1 MB
    sent = 0
    try:
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # answered before the end of the body
            data = piece[:min(MB, total - sent)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            sent += len(data)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection after answering
    status, answer = _read_status(sock)
    sock.close()
    return status, sent, answer


def npy(shape: tuple[Any, ...], dtype: str, data: bytes | None = None) -> bytes:
    """One .npy member: a header declaring `shape`/`dtype`, then `data` (default: the
    zero bytes the header declares)."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    head = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    if data is None:
        n = 1
        for d in shape:
            n *= d
        data = bytes(n * np.dtype(dtype).itemsize)
    return head + data


def npz(members: Mapping[str, bytes | tuple[tuple[int, ...], str]]) -> bytes:
    """An .npz; a (shape, dtype) member holds zeros streamed into a deflated entry (a
    small archive that declares a huge array: a zip bomb)."""
    out = io.BytesIO()
    zero = bytes(1 << 22)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, member in members.items():
            arcname = name if "." in name else f"{name}.npy"  # x.txt: a stray member
            with zf.open(arcname, "w", force_zip64=True) as f:
                if isinstance(member, bytes):
                    f.write(member)
                    continue
                shape, dtype = member
                head = npy(shape, dtype, b"")
                f.write(head)
                left = int(np.prod(shape)) * np.dtype(dtype).itemsize
                while left > 0:
                    f.write(zero[:min(left, len(zero))])
                    left -= len(zero)
    return out.getvalue()


def savez(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def multipart(fields: dict[str, str], file: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with `fields` and `file`; (body, content type)."""
    boundary = "b0undary7e1f"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             .encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 'filename="d.npz"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + file + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def err(r: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in r.text
    for w in words:
        assert w in body["error"]["message"], body
    return body


# -- servers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def abuse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server used only by the memory tests, so nothing else raises its peak."""
    srv = Server(tmp_path_factory.mktemp("abuse-mem"), LIMITS).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("abuse"), LIMITS).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api(srv: Server) -> Iterator[httpx.Client]:
    with srv.client(cli(srv.data_dir, "keys", "create", "--workspace", "abuse")) as c:
        yield c


def upload(api: httpx.Client, data: bytes, task: str = "manipulation",
           features: str | None = None) -> httpx.Response:
    return api.post("/v1/datasets", files={"file": ("d.npz", data)}, timeout=120,
                    data={"features": features or json.dumps(default_features(task))})


def stored_datasets(server: Server) -> list[str]:
    return sorted(p.name for p in (server.data_dir / "datasets").iterdir())


# -- 1. bodies refused before they are read ----------------------------------------------

class HealthProbe(threading.Thread):
    """GET /health in a loop while something else happens; every answer's status."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.statuses, self.done = url, list[int](), threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.done.is_set() or not self.statuses:
                self.statuses.append(c.get("/health").status_code)
                time.sleep(0.05)

    def stop(self) -> list[int]:
        self.done.set()
        self.join(timeout=120)
        return self.statuses


def test_unauthenticated_bodies_are_refused_unread(abuse_server: Server) -> None:
    assert abuse_server.proc is not None
    pid = abuse_server.proc.pid
    before = vm_hwm_mb(pid)
    probe = HealthProbe(abuse_server.url)
    probe.start()
    results: list[tuple[int, int, bytes]] = []
    posts = [threading.Thread(target=lambda: results.append(
        stream_post(abuse_server.url, "/v1/models/train", 200 * MB))) for _ in range(4)]
    for t in posts:
        t.start()
    for t in posts:
        t.join(timeout=300)
    health = probe.stop()
    grown = vm_hwm_mb(pid) - before
    print(f"four unauthenticated 200 MB POSTs: server VmHWM {before:.0f} -> "
          f"{before + grown:.0f} MB")
    assert [r[0] for r in results] == [401] * 4, results
    for _, sent, answer in results:
        assert sent < 200 * MB, "the server waited for the whole body before answering"
        assert b'"unauthorized"' in answer
    assert grown < 100, f"server peak memory grew {grown:.0f} MB"
    assert health and set(health) == {200}
    # chunked (no Content-Length) and a wrong key: refused the same way
    status, sent, _ = stream_post(abuse_server.url, "/v1/datasets", 200 * MB, chunked=True,
                                  headers={"Authorization": "Bearer kai_live_wrong"})
    assert status == 401 and sent < 200 * MB
    assert vm_hwm_mb(pid) - before < 100


def test_zip_bomb_is_refused_before_it_is_decompressed(abuse_server: Server) -> None:
    assert abuse_server.proc is not None
    pid = abuse_server.proc.pid
    key = cli(abuse_server.data_dir, "keys", "create", "--workspace", "bomb")
    n = 16_000_000  # 1 GB of float64 zeros in a ~1 MB archive
    bomb = npz({"joint_positions": ((n, 3), "<f8"), "target": ((n, 2), "<f8"),
                "joint_commands": ((n, 3), "<f8")})
    assert len(bomb) < 2 * MB
    before = vm_hwm_mb(pid)
    with abuse_server.client(key) as api:
        err(upload(api, bomb), 413, "payload_too_large", "16000000 samples", "--max-samples")
        grown = vm_hwm_mb(pid) - before
        # under the sample limit, over the byte limit (128 MB): 240 MB of images
        images = npz({"image": ((10_000, 3, 32, 32), "<f8"), "labels": ((10_000,), "<i8"),
                      "boxes": ((10_000, 4), "<f8")})
        err(upload(api, images, "object_detection"), 413, "payload_too_large",
            "--max-dataset-mb")
    print(f"1 MB zip bomb declaring {n} samples: server VmHWM {before:.0f} -> "
          f"{before + grown:.0f} MB")
    assert grown < 100, f"server peak memory grew {grown:.0f} MB"
    assert vm_hwm_mb(pid) - before < 100
    assert stored_datasets(abuse_server) == []


# -- 1. limits for those with a key --------------------------------------------------------

def test_oversized_bodies_get_413_early(srv: Server, api: httpx.Client) -> None:
    auth = {"Authorization": api.headers["Authorization"]}
    status, sent, answer = stream_post(srv.url, "/v1/models/train", 200 * MB, auth)
    assert status == 413 and sent < 200 * MB and b'"payload_too_large"' in answer
    # chunked: no length to check first, refused once 1 MiB has arrived
    status, sent, answer = stream_post(srv.url, "/v1/models/train", 200 * MB, auth,
                                       chunked=True)
    assert status == 413 and sent < 200 * MB and b'"payload_too_large"' in answer
    # the upload takes up to --max-upload-mb (64), no more
    status, sent, answer = stream_post(srv.url, "/v1/datasets", 200 * MB, auth)
    assert status == 413 and sent < 200 * MB and b"--max-upload-mb" in answer
    # a small body on the same key still works, and a JSON body just under 1 MiB is read
    r = api.post("/v1/models/train", content=b" " * (1 << 20 - 1) + b"{}",
                 headers={"Content-Type": "application/json"})
    err(r, 422, "validation_error", "dataset_id")


# -- 2. uploads: checked before decompressing, real numbers only, off the event loop -----

def test_upload_headers_are_checked_before_reading(srv: Server, api: httpx.Client) -> None:
    before = stored_datasets(srv)
    arrays, _ = make_demo("manipulation", 20)
    good = dict(arrays)
    # complex, object (a pickle) and string arrays: refused with what to do
    for bad, dtype in ((good["target"].astype(np.complex64), "complex64"),
                       (np.array([None] * 20, dtype=object), "object"),
                       (np.array(["ab"] * 20), "<U2")):
        members: dict[str, bytes | tuple[tuple[int, ...], str]] = {
            k: _npy_of(v) for k, v in good.items()}
        members["target"] = _npy_of(bad)
        err(upload(api, npz(members)), 422, "validation_error", "file.target", dtype,
            "astype")
    # an absurd shape with 48 bytes behind it: 4xx, nothing allocated
    members = {k: _npy_of(v) for k, v in good.items()}
    members["target"] = npy((10**13, 3), "<f8", bytes(48))
    err(upload(api, npz(members)), 413, "payload_too_large", "samples")
    for shape in ((5, 3), (-2, -3)):  # header and data disagree; negative sizes
        members["target"] = npy(shape, "<f8", bytes(48))
        err(upload(api, npz(members)), 422, "validation_error", "file.target", "damaged")
    bad_header = npy((20, 2), "<f8").replace(b"(20, 2)", b"(1e13, 2)")
    members["target"] = bad_header
    r = upload(api, npz(members))
    assert r.status_code == 422 and "file" in r.json()["error"]["message"], r.text
    # not an archive of .npy files
    err(upload(api, npz({k: _npy_of(v) for k, v in good.items()} | {"x.txt": b""})), 422,
        "validation_error", "not a .npy")
    # 100,000 empty members (10 MB): refused from the zip's end record, before its
    # directory is parsed (zipfile spends ~500 bytes of memory per member on it)
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(100_000):
            zf.writestr(f"{i}.npy", b"")
    err(upload(api, many.getvalue()), 422, "validation_error", "100000 members")
    assert stored_datasets(srv) == before


def _npy_of(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def test_upload_is_stored_compressed_and_the_server_answers_meanwhile(
        srv: Server, api: httpx.Client) -> None:
    n = 100_000  # 16 MB of noise: seconds of checking and compressing
    rng = np.random.default_rng(3)
    arrays = {"scan": rng.random((n, 64), np.float32) * 4,
              "cmd_vel": rng.random((n, 2), np.float32)}
    features = json.dumps(default_features("navigation"))
    payload, ctype = multipart({"features": features, "name": "noise"}, savez(arrays))
    sock = _connect(srv.url)
    sock.sendall(f"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                 f"Authorization: {api.headers['Authorization']}\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    # the body is sent; while the server checks and compresses it, /health answers
    assert httpx.get(srv.url + "/health", timeout=120).status_code == 200
    upload_answered_first = bool(select.select([sock], [], [], 0)[0])
    status, answer = _read_status(sock)
    while not answer.rstrip().endswith(b"}"):
        answer += sock.recv(65536)
    sock.close()
    assert status == 201, answer
    assert not upload_answered_first, "the upload held the event loop"
    ds = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    path = srv.data_dir / "datasets" / f"{ds['id']}.npz"
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    with np.load(path) as stored:
        np.testing.assert_array_equal(stored["scan"], arrays["scan"])


# -- 9. odd input answers 4xx, never 500 ----------------------------------------------------

def test_odd_input_is_refused_not_500(srv: Server, api: httpx.Client) -> None:
    for expires in ("%C2%B2", "9" * 5000, "-1", "%EF%BC%91"):
        r = httpx.get(f"{srv.url}/downloads/mdl_x_v1.onnx?expires={expires}&sig=00")
        err(r, 403, "forbidden", "request the export again")
    surrogate = '"\\ud800"'
    bodies = {
        "/v1/models/train": '{"dataset_id": %s, "robot_id": "rob_a", "task": "navigation"}',
        "/v1/models/mdl_x/promote": '{"version": %s}',
        "/v1/models/mdl_x/export": '{"format": "onnx", "version": %s}',
    }
    for path, body in bodies.items():
        r = api.post(path, content=(body % surrogate).encode(),
                     headers={"Content-Type": "application/json"})
        assert r.status_code in (404, 422), (path, r.text)
        assert r.json()["error"]["code"] in ("not_found", "validation_error")
    named = '{"dataset_id": "ds_x", "robot_id": "rob_a", "task": "navigation", "name": %s}'
    r = api.post("/v1/models/train", content=(named % surrogate).encode(),
                 headers={"Content-Type": "application/json"})
    err(r, 422, "validation_error", "name", "surrogate")
    arrays, features = make_demo("navigation", 20)
    for bad in (json.dumps(features).replace('"scan"', surrogate),
                json.dumps(features).replace("0.1", "1e999"), '{"task": NaN}',
                "[" * 100_000):
        err(upload(api, savez(arrays), features=bad), 422, "validation_error", "features")
    assert api.get("/health").status_code == 200


def test_an_unexpected_error_logs_once_and_keeps_the_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No route of ours fails on purpose: a real uvicorn serves the app plus one that does."""
    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("internals at /srv/x.py")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        conn = HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=30)
        with caplog.at_level(logging.INFO):
            conn.request("GET", "/boom")
            r = conn.getresponse()
            body = json.loads(r.read())
            first_socket = conn.sock
            assert r.status == 500 and body["error"]["code"] == "internal"
            assert "internals" not in json.dumps(body)
            assert (r.getheader("connection") or "").lower() != "close"
            conn.request("GET", "/health")
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
            assert conn.sock is first_socket, "the connection was dropped after the 500"
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert len(tracebacks) == 1, [rec.getMessage() for rec in caplog.records]
    assert "/boom" in tracebacks[0].getMessage()
