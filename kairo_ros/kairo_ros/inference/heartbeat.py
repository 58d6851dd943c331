"""The robot's heartbeat: what the node serves, how well, and its shadow results, sent to the fleet API.

`Heartbeat` runs on a thread of its own, every `period_s`: it asks the node
for its report (cheap: counters and identities), posts it, and hands the
answer (the robot's assignment) back to the node, which checks its source at
once when the assignment changed. `poke()` sends one early (after a swap, so
a rollout sees the new version without waiting a period). Nothing here
touches the prediction path; a heartbeat that fails is logged, throttled,
and the next one is the retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kairo_ros.api import Assignment, KairoError

# A failing heartbeat is logged when it starts failing, then at most this often, and once when it recovers.
FAILURE_LOG_PERIOD_S = 60.0
# Pokes closer together than this are sent as one.
MIN_GAP_S = 0.2

Report = Callable[[], Mapping[str, Any]]
Send = Callable[[Mapping[str, Any]], "Assignment | None"]


class Heartbeat:
    """Sends `report()` through `send` every `period_s` and passes each answer to `on_answer`."""

    def __init__(self, period_s: float, report: Report, send: Send, on_answer: Callable[[Assignment | None], None],
                 warn: Callable[[str], None], info: Callable[[str], None]) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.period_s = period_s
        self._report = report
        self._send = send
        self._on_answer = on_answer
        self._warn = warn
        self._info = info
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._failing_since: float | None = None
        self._last_failure_log = 0.0
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="kairo-inference-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """Send the next heartbeat now rather than at the end of the period."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread (a heartbeat in flight ends within its HTTP deadline). Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            self._beat()
            # Until the period is up, or a poke (not sooner than MIN_GAP_S after the last one).
            self._stopping.wait(max(0.0, MIN_GAP_S - (time.monotonic() - started)))
            self._wake.wait(max(0.0, self.period_s - (time.monotonic() - started)))
            self._wake.clear()

    def _beat(self) -> None:
        try:
            answer = self._send(self._report())
        except KairoError as exc:
            self.failed += 1
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                self._last_failure_log = now
                self._warn(f"heartbeat not delivered ({exc}); serving goes on, retrying every {self.period_s:g} s")
            elif now - self._last_failure_log >= FAILURE_LOG_PERIOD_S:
                self._last_failure_log = now
                self._warn(f"heartbeats failing for {now - self._failing_since:.0f} s ({self.failed} in all; "
                           f"last: {exc}); serving goes on")
            return
        except Exception as exc:  # noqa: BLE001 - the heartbeat thread must outlive one bad report
            self.failed += 1
            self._warn(f"heartbeat failed unexpectedly: {type(exc).__name__}: {exc}")
            return
        self.sent += 1
        if self._failing_since is not None:
            self._info(f"heartbeats delivered again after {time.monotonic() - self._failing_since:.0f} s")
            self._failing_since = None
        try:
            self._on_answer(answer)
        except Exception as exc:  # noqa: BLE001
            self._warn(f"heartbeat answer not handled: {type(exc).__name__}: {exc}")
