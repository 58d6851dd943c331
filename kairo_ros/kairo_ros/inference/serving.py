"""The loader thread: `ModelWorker` runs every download, load and warm-up on its own thread,
in order, so no callback ever waits for one (what it loads is decided by model_server.ModelServer).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("kairo_ros.inference")


@dataclass(frozen=True)
class LoadRequest:
    """Why the worker should look for a model: a promotion event, a poll, or a new model_path."""

    reason: str                 # "event" | "poll" | "file"
    path: str = ""              # for "file"
    version: str = ""           # for "event": the version promoted


_STOP = LoadRequest("stop")


class ModelWorker:
    """A thread that handles load requests in order, and polls every `poll_period_s` (0: never)."""

    def __init__(self, handle: Callable[[LoadRequest], None], poll_period_s: float,
                 name: str = "kairo-model-worker") -> None:
        self._handle = handle
        self._poll_period_s = poll_period_s
        self._queue: queue.Queue[LoadRequest] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, request: LoadRequest) -> None:
        self._queue.put(request)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to end after its current request; wait at most `timeout_s`."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("model worker still busy after %.0f s; it ends when its request does", timeout_s)

    def _run(self) -> None:
        next_poll = time.monotonic() + self._poll_period_s if self._poll_period_s > 0 else math.inf
        while True:
            # Wake at least every second, so a stop or a due poll is never missed.
            wait_s = min(1.0, max(0.0, next_poll - time.monotonic()))
            try:
                request = self._queue.get(timeout=wait_s)
            except queue.Empty:
                if time.monotonic() < next_poll:
                    continue
                request = LoadRequest("poll")
            if request is _STOP:
                return
            if request.reason == "poll" and self._poll_period_s > 0:
                next_poll = time.monotonic() + self._poll_period_s
            try:
                self._handle(request)
            except Exception:  # noqa: BLE001 - the worker must outlive any one request
                log.exception("model worker: request %s failed", request)
