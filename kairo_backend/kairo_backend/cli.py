"""`kairo-backend`: serve the API, create keys, create demo datasets."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kairo_backend.core.config import EXECUTORS, Settings, default_data_dir
from kairo_backend.errors import KairoError
from kairo_backend.store.engine import database_error_types
from kairo_features.schema import TASKS

if TYPE_CHECKING:
    from kairo_backend.store import Store


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kairo-backend",
                                description="The Kairo Models API, served locally.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (default: $KAIRO_DATA_DIR, else "
                             "$XDG_DATA_HOME/kairo, else ~/.local/share/kairo)")
    common.add_argument("--database-url", default=None,
                        help="postgresql://USER[:PASSWORD]@HOST:PORT/DB, the database every "
                             "replica shares (default: $KAIRO_DATABASE_URL, else the SQLite "
                             "file in the data dir; docs/deploy.md)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", parents=[common], help="run the HTTP server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    s.add_argument("--workers", type=int, default=1, help="training processes at once")
    s.add_argument("--max-upload-mb", type=float, default=256.0,
                   help="largest dataset upload request, as sent (413 above)")
    s.add_argument("--max-dataset-mb", type=float, default=512.0,
                   help="largest uploaded dataset once decompressed (413 above)")
    s.add_argument("--max-samples", type=int, default=1_000_000,
                   help="most samples in an uploaded dataset (413 above)")
    s.add_argument("--torch-threads", type=int, default=None,
                   help="torch threads per training process")
    s.add_argument("--public-url", default=None, help="base URL for download links")
    s.add_argument("--access-log", action="store_true")
    s.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="where runs train: local worker processes, or tasks on a Ray "
                        "cluster (default: $KAIRO_EXECUTOR, else local; docs/deploy.md)")
    s.add_argument("--ray-address", default=None,
                   help="with --executor ray: the Ray head, HOST:PORT, or 'auto' for the "
                        "one on this machine (default: $KAIRO_RAY_ADDRESS)")
    s.add_argument("--ray-num-cpus", type=float, default=1.0,
                   help="with --executor ray: CPUs each run's task declares")
    s.add_argument("--ray-num-gpus", type=float, default=None,
                   help="with --executor ray: GPUs each run's task declares (default: 1 "
                        "when the cluster has GPUs, else 0)")

    k = sub.add_parser("keys", help="API keys")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", parents=[common], help="create a key; printed last")
    kc.add_argument("--workspace", required=True)
    kl = ksub.add_parser("list", parents=[common],
                         help="list keys: id, prefix, workspace, created, revoked (no secrets)")
    kl.add_argument("--workspace", default=None, help="only this workspace's keys")
    kr = ksub.add_parser("revoke", parents=[common],
                         help="revoke a key; a running server refuses it within a second")
    kr.add_argument("key", help="the key id (key_…) or its prefix (kai_live_…), as listed")

    d = sub.add_parser("datasets", help="datasets")
    dsub = d.add_subparsers(dest="datasets_command", required=True)
    dc = dsub.add_parser("create-demo", parents=[common],
                         help="generate a demo dataset; its ID printed last")
    dc.add_argument("task", choices=TASKS)
    dc.add_argument("--workspace", required=True)
    dc.add_argument("--samples", type=int, default=None)
    dc.add_argument("--seed", type=int, default=0)
    dc.add_argument("--name", default=None)
    di = dsub.add_parser("import", parents=[common],
                         help="import a rosbag2 recording as a dataset; its ID printed last")
    di.add_argument("path", type=Path,
                    help="a bag directory, an .mcap file, or a .zip / .tar.gz of a bag directory")
    di.add_argument("--features", type=Path, required=True,
                    help="the features document (JSON, docs/features.md)")
    di.add_argument("--workspace", required=True)
    di.add_argument("--name", default=None, help="default: the recording's file name")

    db = sub.add_parser("db", help="the database's schema")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", parents=[common],
                     help="bring the schema to this release's newest revision (serve and "
                          "the other commands do it too when they open the database)")
    dbsub.add_parser("current", parents=[common], help="print the schema's revision")
    return p


def _serve(settings: Settings) -> int:
    import uvicorn

    class _QuietServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # A second SIGINT would make uvicorn skip the app's shutdown (the
            # dispatcher stopping its workers) and log a CancelledError; the shutdown
            # is bounded anyway (timeout_graceful_shutdown), so every signal just asks
            # for it.
            self.should_exit = True

    if settings.executor == "ray":
        from kairo_backend.jobs.ray_executor import check_address

        check_address(settings.ray_address)
    from kairo_backend.main import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    app = create_app(settings)
    # proto IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only
    # when the listening socket says so (else every response waits ~40 ms on Nagle)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"kairo-backend listening on http://{host}:{port}", flush=True)
    print(f"data dir {settings.data_dir}; API docs at http://{host}:{port}/docs", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=settings.access_log,
                            timeout_graceful_shutdown=5)
    server = _QuietServer(config)

    def stop(_signum: int, _frame: object) -> None:
        # uvicorn handles SIGINT/SIGTERM while it serves, then raises the signal again
        # once it has shut down: ending here, quietly, makes that exit 0 and no traceback
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    server.run(sockets=[sock])
    for sig in (signal.SIGINT, signal.SIGTERM):
        # a late signal would meet the default handlers Python restores while it exits
        signal.signal(sig, signal.SIG_IGN)
    return 0


def _keys(args: argparse.Namespace, store: Store, settings: Settings) -> int:
    from kairo_backend.core import security
    from kairo_backend.core.util import iso
    from kairo_backend.store.engine import describe

    if args.keys_command == "create":
        key = store.create_key(args.workspace)
        print(f"workspace {args.workspace}: new API key {security.key_id(key)} (shown once, "
              f"only its hash is stored in {describe(settings.database)})")
        print(key)
        return 0
    if args.keys_command == "list":
        print(f"{'ID':<17} {'PREFIX':<14} {'WORKSPACE':<20} {'CREATED':<21} REVOKED")
        for k in store.list_keys(args.workspace):
            print(f"{k['id']:<17} {(k['prefix'] or '?') + '…':<14} {k['workspace']:<20} "
                  f"{iso(k['created_at']):<21} {iso(k['revoked_at']) or '-'}")
        return 0
    try:
        k = store.revoke_key(args.key)
    except LookupError as exc:
        print(f"kairo-backend: error: {exc}", file=sys.stderr)
        return 2
    print(f"revoked {k['id']} ({k['prefix'] or '?'}…) of workspace {k['workspace']} at "
          f"{iso(k['revoked_at'])}; a running server refuses it within a second")
    return 0


def _import(args: argparse.Namespace, store: Store, settings: Settings) -> int:
    import json

    from kairo_backend.training.datasets import check_features
    from kairo_backend.training.recordings import import_dataset

    path: Path = args.path
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory (a bag directory, an .mcap file "
                         "or a .zip / .tar.gz of a bag directory)")
    try:
        doc = json.loads(args.features.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"--features {args.features}: not valid JSON ({exc})") from exc
    features = check_features(doc)
    ws = store.ensure_workspace(args.workspace)
    name = (args.name or path.name or "recording")[:200]
    ds = import_dataset(settings, store, ws, name, path, features, file_name=path.name)
    dropped = sum(ds["dropped"].values())
    source = ds["source"]
    assert source is not None  # an imported dataset records the recording it came from
    print(f"workspace {args.workspace}: dataset {name}, task {ds['task']}, {ds['samples']} "
          f"samples from {source['messages']} messages ({dropped} dropped)")
    print(ds["id"])
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from kairo_backend.store import migrate
    from kairo_backend.store.db import BACKGROUND_BUSY_TIMEOUT_S
    from kairo_backend.store.engine import describe, make_engine

    engine = make_engine(settings.database, BACKGROUND_BUSY_TIMEOUT_S)
    where = describe(settings.database)
    if args.db_command == "upgrade":
        before, head = migrate.upgrade(engine)
        print(f"{where}: schema already at revision {head}" if before == head else
              f"{where}: schema upgraded from {before or 'an empty database'} to revision "
              f"{head}")
        return 0
    revision = migrate.current(engine)
    state = ("up to date" if revision == migrate.HEAD else
             "run 'kairo-backend db upgrade'" if revision in (None, "legacy") or
             revision < migrate.HEAD else "newer than this kairo-backend")
    print(f"{where}: schema revision {revision or 'none (empty database)'}; this "
          f"kairo-backend's newest is {migrate.HEAD} ({state})")
    return 0


def _errors() -> tuple[type[Exception], ...]:
    """What a command reports in one line: bad input, a full disk, a database's error."""
    return (KairoError, ValueError, OSError, RuntimeError, sqlite3.Error,
            *database_error_types())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    try:
        if args.command == "serve":
            kw: dict[str, object] = {}
            if args.torch_threads:
                kw["torch_threads"] = args.torch_threads
            if args.database_url:  # else KAIRO_DATABASE_URL, read by Settings
                kw["database_url"] = args.database_url
            if args.executor:  # else KAIRO_EXECUTOR / KAIRO_RAY_ADDRESS, read by Settings
                kw["executor"] = args.executor
            if args.ray_address:
                kw["ray_address"] = args.ray_address
            settings = Settings(data_dir=data_dir, host=args.host, port=args.port,
                                workers=args.workers, max_upload_mb=args.max_upload_mb,
                                max_dataset_mb=args.max_dataset_mb,
                                max_dataset_samples=args.max_samples,
                                public_url=args.public_url, access_log=args.access_log,
                                ray_num_cpus=args.ray_num_cpus,
                                ray_num_gpus=args.ray_num_gpus, **kw)  # type: ignore[arg-type]
            return _serve(settings)
        from kairo_backend.store import Store
        from kairo_backend.store.db import BACKGROUND_BUSY_TIMEOUT_S

        settings = Settings(data_dir=data_dir, **(
            {"database_url": args.database_url} if args.database_url else {}))
        settings.ensure_dirs()
        if args.command == "db":
            return _db(args, settings)
        store = Store(settings.database, busy_timeout_s=BACKGROUND_BUSY_TIMEOUT_S)
        if args.command == "keys":
            return _keys(args, store, settings)
        if args.command == "datasets" and args.datasets_command == "import":
            return _import(args, store, settings)
        if args.command == "datasets":
            from kairo_backend.services import create_dataset
            from kairo_backend.training.demo import make_demo

            arrays, features = make_demo(args.task, args.samples, args.seed)
            ws = store.ensure_workspace(args.workspace)
            name = args.name or f"demo-{args.task}-seed{args.seed}"
            ds = create_dataset(settings, store, ws, name, arrays, features)
            print(f"workspace {args.workspace}: dataset {name}, task {ds['task']}, "
                  f"{ds['samples']} samples")
            print(ds["id"])
            return 0
    except _errors() as exc:
        print(f"kairo-backend: error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
