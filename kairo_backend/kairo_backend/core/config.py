"""One Settings object for the whole backend (server, CLI and workers)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


def default_data_dir() -> Path:
    """KAIRO_DATA_DIR, else the per-user data directory (XDG on Linux)."""
    env = os.environ.get("KAIRO_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "kairo"


def _default_threads() -> int:
    return max(1, min(2, (os.cpu_count() or 2) // 2))


EXECUTORS = ("local", "ray")


def _default_executor() -> str:
    return os.environ.get("KAIRO_EXECUTOR") or "local"


def _default_ray_address() -> str | None:
    return os.environ.get("KAIRO_RAY_ADDRESS") or None


def _default_database_url() -> str | None:
    return os.environ.get("KAIRO_DATABASE_URL") or None


def _default_link_secret() -> str | None:
    return os.environ.get("KAIRO_LINK_SECRET") or None


def database_for(data_dir: Path) -> Path | str:
    """The database a worker or tool of this data dir opens: KAIRO_DATABASE_URL (the
    server passes its own on), else the SQLite file in the data dir."""
    return _default_database_url() or Path(data_dir) / "kairo.db"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # training worker processes running at once
    max_upload_mb: float = 256.0  # the upload's request body, as sent (compressed or not)
    max_dataset_mb: float = 512.0  # an uploaded dataset's arrays, uncompressed
    max_dataset_samples: int = 1_000_000
    max_queued_runs: int = 100  # per workspace; beyond it POST train answers 429
    torch_threads: int = field(default_factory=_default_threads)
    download_ttl_s: int = 24 * 3600
    public_url: str | None = None  # base of download links; default: the request's host
    access_log: bool = False
    # postgresql://USER[:PASSWORD]@HOST:PORT/DB: the database every replica shares
    # (docs/deploy.md); None: the SQLite file in the data dir.
    database_url: str | None = field(default_factory=_default_database_url)
    # The key of signed download links, the same for every replica (at least 32
    # characters); None: on PostgreSQL made once and kept in the database, on SQLite
    # the data dir's secret.key.
    link_secret: str | None = field(default_factory=_default_link_secret, repr=False)
    # Where runs train (docs/deploy.md): "local" worker processes, or "ray" tasks on the
    # cluster at ray_address (HOST:PORT of its head, or "auto" for the one on this machine).
    executor: str = field(default_factory=_default_executor)
    ray_address: str | None = field(default_factory=_default_ray_address)
    ray_num_cpus: float = 1.0  # CPUs each run's Ray task declares
    ray_num_gpus: float | None = None  # GPUs each run declares; None: 1 when the cluster has any

    def __post_init__(self) -> None:
        # resolved once: workers and the CLI run with other working directories
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.workers < 1 or self.workers > 64:
            raise ValueError(f"workers must be in 1..64, got {self.workers}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        if self.max_dataset_mb <= 0:
            raise ValueError(f"max_dataset_mb must be > 0, got {self.max_dataset_mb}")
        if self.max_dataset_samples < 1:
            raise ValueError(f"max_dataset_samples must be >= 1, got {self.max_dataset_samples}")
        if self.link_secret is not None and len(self.link_secret) < 32:
            raise ValueError("the link secret (KAIRO_LINK_SECRET) must have at least 32 "
                             "characters, e.g. the output of 'openssl rand -hex 32'")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, "
                             f"got {self.executor!r} (KAIRO_EXECUTOR or --executor)")
        if self.ray_num_cpus <= 0:
            raise ValueError(f"ray_num_cpus must be > 0, got {self.ray_num_cpus}")
        if self.ray_num_gpus is not None and self.ray_num_gpus < 0:
            raise ValueError(f"ray_num_gpus must be >= 0, got {self.ray_num_gpus}")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "kairo.db"

    @property
    def database(self) -> Path | str:
        """What kairo_backend.store.Store opens: the URL, else the SQLite file."""
        return self.database_url or self.db_path

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret.key"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.datasets_dir, self.artifacts_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
