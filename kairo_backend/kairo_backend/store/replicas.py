"""A server's life as a replica: registered at start, a heartbeat while it serves,
gone from the replicas table when it stops.

Other replicas take over the running runs of one whose heartbeat stops
(Store.running_runs, the dispatcher's sweep): a replica killed with -9 loses
nothing. The heartbeat is a thread of its own so that a busy dispatcher or
request threads never make a live replica look dead.
"""

from __future__ import annotations

import logging
import threading

from kairo_backend.store.db import REPLICA_LEASE_S, Store

log = logging.getLogger("kairo_backend.replicas")
# Several heartbeats per lease: a few missed ones (a busy database) lose nothing.
HEARTBEAT_S = REPLICA_LEASE_S / 8


class ReplicaHeartbeat:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Register the replica (before the dispatcher looks at running runs) and beat."""
        replica = self.store.register_replica()
        log.info("serving as replica %s", replica)
        self._thread = threading.Thread(target=self._beat, name="kairo-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.store.heartbeat()
            except Exception as exc:  # noqa: BLE001 - a busy or lost database: next beat
                log.warning("replica heartbeat postponed: %s", exc)

    def stop(self) -> None:
        """After the dispatcher stopped (its runs re-queued): leave the replicas table."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.store.release_replica()
        except Exception as exc:  # noqa: BLE001 - the others find it gone by its lease
            log.warning("could not leave the replicas table: %s", exc)
