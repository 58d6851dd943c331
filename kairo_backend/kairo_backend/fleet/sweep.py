"""The server's fleet sweep: every live deployment's guard evaluated SWEEP_INTERVAL_S
apart, so that a robot that stops reporting fails its deployment even when no
heartbeat arrives. Started and stopped with the app (main.py), like the dispatcher.
"""

from __future__ import annotations

import logging
import threading

from kairo_backend.errors import storage_error
from kairo_backend.store import Store
from kairo_backend.store.fleet import FleetStore

log = logging.getLogger("kairo_backend.fleet")

SWEEP_INTERVAL_S = 0.5


class FleetSweep:
    def __init__(self, store: Store, interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.fleet = FleetStore(store)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="kairo-fleet-sweep",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.fleet.sweep()  # FleetStore.evaluate logs each change of state
                except Exception as exc:  # keep sweeping whatever one pass met
                    if storage_error(exc) is not None:  # a busy database, a full disk
                        log.warning("fleet sweep postponed: %s", exc)
                    else:
                        log.exception("fleet sweep failed")
                self._stop.wait(self.interval_s)
        finally:
            self.fleet.store.close()  # this thread's connection
