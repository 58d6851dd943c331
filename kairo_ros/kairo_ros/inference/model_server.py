"""The hot-swap core, without ROS: which model serves, which are loading, which were refused.

`ModelServer` owns the session answering messages now (`current`), the one
it replaced (kept for a rollback), the versions being loaded (candidates)
and the versions refused (never loaded again), behind one lock. That lock
is held only to decide and to swap, never while a model downloads or loads,
and never by the prediction path: it reads `current`, one attribute, once
per message, so a swap lands between two messages.

What happens is reported to listeners as `ServerEvent`s (the lifecycle node
turns them into logs and diagnostics; a listener must not call back into the
server's adopt, stop or rollback); nothing here knows about ROS, so the
swap, rollback, refusal and concurrent-promotion rules are tested with real
onnxruntime sessions and no DDS.

Concurrent requests: each adopt takes a ticket when it starts; a model that
finishes loading after a later request already swapped its model in is
dropped (superseded), so the version asked for last serves, whatever the
load times.

Shadow: when the source names a candidate (a shadow deployment), the server
loads it beside the serving model, with the same checks (sha256, and the
serving model's I/O signature: a candidate that differs is refused), and
runs it through a `ShadowRunner` (`shadow`, read by the prediction path
like `current`). Every refusal is kept in `refusals` for the heartbeat.
"""

from __future__ import annotations

import collections
import pathlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from kairo_features.schema import Features
from kairo_ros.api import KairoError
from kairo_ros.inference.model_session import ModelIdentity, ModelSession
from kairo_ros.inference.model_source import OFFLINE_ERRORS, LocalModel, ModelSource, ShadowRef, VersionRef
from kairo_ros.inference.shadow import ShadowRunner, shadow_tolerance

# What a ServerEvent reports.
SERVING: Final = "serving"            # a model was swapped in (`model`; `replaced`: the one before)
REJECTED: Final = "rejected"          # a model was refused; the current one (if any) keeps serving
ROLLED_BACK: Final = "rolled_back"    # the current model failed on a message; the previous one serves again
INFERENCE_FAILED: Final = "inference_failed"  # a message failed and there is nothing to roll back to
NO_MODEL: Final = "no_model"          # nothing to serve yet (no active version, nothing cached)
UNREACHABLE: Final = "unreachable"    # the backend cannot answer now (reported once until it answers again)
ERROR: Final = "error"                # the backend answered with an error while checking for a version
SHADOWING: Final = "shadowing"        # a candidate runs beside the serving model (`model`)
SHADOW_ENDED: Final = "shadow_ended"  # the candidate was let go (`model`)
REFUSALS_KEPT = 20


@dataclass(frozen=True)
class Refusal:
    """A version this node refused (at load, or after it failed on a message), as the heartbeat reports it."""

    ref: VersionRef
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"model_id": self.ref.model_id, "version": self.ref.version, "code": self.code,
                "message": self.message[:2000]}


@dataclass(frozen=True)
class ServerEvent:
    kind: str
    message: str
    code: str = ""
    model: ModelIdentity | None = None
    replaced: ModelIdentity | None = None
    provider: str = ""
    from_cache: bool = False
    offline_reason: str = ""


Listener = Callable[[ServerEvent], None]
# (file, features the model serving now has, or None) -> a checked, warmed-up session; KairoError when refused.
Loader = Callable[[LocalModel, "Features | None"], ModelSession]
# Called under the lock with the first model to serve, to create its endpoints; KairoError refuses the model.
Wire = Callable[[ModelSession], None]


def session_loader(providers: list[str], intra_op_threads: int) -> Loader:
    """The loader of the real node: ModelSession.load with these providers and threads."""
    def load(local: LocalModel, expected: Features | None) -> ModelSession:
        return ModelSession.load(local.path, providers, intra_op_threads, expected=expected,
                                 sha256=local.ref.sha256, model_id=local.ref.model_id, version=local.ref.version)
    return load


def file_model(path: str | pathlib.Path) -> LocalModel:
    """A model_path file: no API identity, the file's metadata names it."""
    return LocalModel(VersionRef("", "", ""), pathlib.Path(path).expanduser(), from_cache=False)


def _ref_of(identity: ModelIdentity) -> VersionRef:
    return VersionRef(identity.model_id, identity.version, identity.sha256)


class ModelServer:
    """The serving model and its candidates; every change under one lock, reported as events."""

    def __init__(self, load: Loader, source: ModelSource | None = None, *,
                 wire: Wire | None = None, unwire: Callable[[], None] | None = None,
                 shadow_tolerance: float = 0.05) -> None:
        self._load = load
        self.source = source
        self._shadow_tolerance = shadow_tolerance
        # Read without the lock by the prediction path, like `current`.
        self.shadow: ShadowRunner | None = None
        self._refusals: collections.deque[Refusal] = collections.deque(maxlen=REFUSALS_KEPT)
        self._wire = wire
        self._unwire = unwire
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        # Read without the lock by the prediction path: one reference, replaced whole.
        self.current: ModelSession | None = None
        self._previous: ModelSession | None = None
        self._wired = False
        self._open = False
        self._candidates: set[VersionRef] = set()
        self._rejected: set[VersionRef] = set()
        self._tickets = 0
        self._served_ticket = 0
        self._unreachable_reported = False

    # --- observers ------------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: ServerEvent) -> None:
        for listener in self._listeners:
            listener(event)

    @property
    def previous(self) -> ModelSession | None:
        return self._previous

    @property
    def rejected(self) -> frozenset[VersionRef]:
        with self._lock:
            return frozenset(self._rejected)

    @property
    def refusals(self) -> list[Refusal]:
        """The versions refused since the node started (the latest REFUSALS_KEPT)."""
        with self._lock:
            return list(self._refusals)

    @property
    def candidates(self) -> frozenset[VersionRef]:
        with self._lock:
            return frozenset(self._candidates)

    # --- serving on and off ---------------------------------------------------------------------------
    def start(self) -> None:
        """Accept models from now on; the first one is wired."""
        with self._lock:
            self._open = True

    def stop(self) -> None:
        """Serve nothing and remove the endpoints; a load still running is dropped when it ends."""
        with self._lock:
            self._open = False
            if self._wired and self._unwire is not None:
                self._unwire()
            self._wired = False
            self.current = self._previous = None
            shadow, self.shadow = self.shadow, None
        if shadow is not None:
            shadow.stop()

    # --- adopting a model (loader threads; never the prediction path) ---------------------------------
    def adopt(self, local: LocalModel) -> bool:
        """Load, check and warm up `local` and serve it, unless a later request won meanwhile."""
        with self._lock:
            self._tickets += 1
            ticket = self._tickets
            serving = self.current
        try:
            session = self._load(local, serving.features if serving else None)
        except KairoError as exc:
            self._refuse(local.ref, exc.code, f"model refused ({self._keeps()}): {exc}")
            return False
        refused: KairoError | None = None
        with self._lock:
            if not self._open or ticket < self._served_ticket:
                return False  # stopped, or superseded by a model asked for later
            if not self._wired and self._wire is not None:
                try:
                    self._wire(session)
                    self._wired = True
                except KairoError as exc:
                    refused = exc
            if refused is None:
                replaced, self.current = self.current, session
                if replaced is not None:
                    self._previous = replaced
                self._served_ticket = ticket
                # Under the lock, so that listeners see the swaps in the order they happened.
                self._emit(ServerEvent(SERVING, f"serving {session.identity.model_id or '-'} "
                                                f"{session.identity.version or '-'}", model=session.identity,
                                       replaced=replaced.identity if replaced else None,
                                       provider=session.provider, from_cache=local.from_cache,
                                       offline_reason=local.offline_reason))
        if refused is not None:
            self._refuse(local.ref, refused.code, f"model refused ({self._keeps()}): {refused}")
            return False
        if self.source is not None and local.ref.model_id:
            self.source.mark_good(local)
        return True

    def adopt_file(self, path: str | pathlib.Path) -> bool:
        return self.adopt(file_model(path))

    def boot(self, model_path: str = "") -> bool:
        """Serve `model_path`, or the source's active version (the cache when the backend is unreachable)."""
        if model_path:
            return self.adopt_file(model_path)
        if self.source is None:
            self._emit(ServerEvent(NO_MODEL, "no model to serve: neither a file nor an API source",
                                   code="no_model"))
            return False
        try:
            local = self.source.boot()
        except KairoError as exc:
            self._emit(ServerEvent(NO_MODEL, f"no model to serve yet: {exc}", code=exc.code))
            return False
        served = self.adopt(local)
        if served:
            self._check_shadow()
        return served

    def check_source(self) -> bool:
        """Serve the source's version if it is new, not refused before and not loading already; then
        shadow the source's candidate, if it names one."""
        served = self._check_serving()
        self._check_shadow()
        return served

    def _check_serving(self) -> bool:
        source = self.source
        if source is None:
            return False
        try:
            ref = source.resolve()
        except OFFLINE_ERRORS as exc:
            if not self._unreachable_reported:
                self._unreachable_reported = True
                self._emit(ServerEvent(UNREACHABLE, f"cannot check for a new version: {exc}", code=exc.code))
            return False
        except KairoError as exc:
            kind = NO_MODEL if exc.code == "no_model" else ERROR
            self._emit(ServerEvent(kind, f"cannot check for a new version: {exc}", code=exc.code))
            return False
        self._unreachable_reported = False
        with self._lock:
            current = self.current
            if current is not None and _ref_of(current.identity) == ref:
                return False
            if ref in self._rejected or ref in self._candidates:
                return False
            self._candidates.add(ref)
        try:
            try:
                local = source.fetch(ref)
            except KairoError as exc:
                self._refuse(ref, exc.code, f"{ref.model_id} {ref.version} not loaded, "
                                            f"{self._keeps()}: {exc}")
                return False
            return self.adopt(local)  # a refused one is added to the rejected versions
        finally:
            with self._lock:
                self._candidates.discard(ref)

    def _check_shadow(self) -> None:
        """Load the candidate the source names now beside the serving model, or let the last one go."""
        source = self.source
        if source is None:
            return
        wanted: ShadowRef | None = source.shadow
        with self._lock:
            running, serving = self.shadow, self.current
            if running is not None and wanted is not None and _ref_of(running.identity) == wanted.ref \
                    and running.deployment_id == wanted.deployment_id:
                return  # shadowing it already
            self.shadow = None  # no candidate now, or another one: the last one goes
            start = wanted is not None and serving is not None and self._open \
                and wanted.ref not in self._rejected and wanted.ref not in self._candidates
            if start:
                assert wanted is not None
                self._candidates.add(wanted.ref)
        if running is not None:
            running.stop()
            self._emit(ServerEvent(SHADOW_ENDED, f"no longer shadowing {running.identity.model_id} "
                                                 f"{running.identity.version}", model=running.identity))
        if not start:
            return
        assert wanted is not None
        try:
            self._start_shadow(wanted, serving)
        finally:
            with self._lock:
                self._candidates.discard(wanted.ref)

    def _start_shadow(self, wanted: ShadowRef, serving: ModelSession | None) -> None:
        source = self.source
        assert source is not None and serving is not None
        ref = wanted.ref
        try:
            local = source.fetch(ref)
            # The serving model's features: a candidate with another I/O signature is refused.
            candidate = self._load(local, serving.features)
        except OFFLINE_ERRORS as exc:  # not the candidate's fault: the next check tries again
            self._emit(ServerEvent(UNREACHABLE, f"cannot fetch shadow candidate {ref.version}: {exc}", code=exc.code))
            return
        except KairoError as exc:
            self._refuse(ref, exc.code, f"shadow candidate {ref.model_id} {ref.version} refused: {exc}")
            return
        runner = ShadowRunner(candidate, wanted.deployment_id, shadow_tolerance(candidate, self._shadow_tolerance))
        with self._lock:
            replaced, self.shadow = self.shadow, (runner if self._open else None)
        if replaced is not None:
            replaced.stop()
        if self.shadow is not runner:
            runner.stop()
            return
        self._emit(ServerEvent(SHADOWING, f"shadowing {ref.model_id} {ref.version} beside "
                                          f"{serving.identity.version} (deployment {wanted.deployment_id or '-'}, "
                                          f"tolerance {runner.tolerance:g})",
                               model=candidate.identity, provider=candidate.provider))

    def _refuse(self, ref: VersionRef, code: str, message: str) -> None:
        if ref.model_id:
            with self._lock:
                self._rejected.add(ref)
                self._refusals.append(Refusal(ref, code, message))
        self._emit(ServerEvent(REJECTED, message, code=code))

    def _keeps(self) -> str:
        return "the current model keeps serving" if self.current is not None else "nothing is serving"

    # --- a failed inference (the prediction path's thread) ---------------------------------------------
    def rollback(self, failed: ModelSession) -> ModelSession | None:
        """Serve the previous model again if `failed` still serves; `failed` is never loaded again."""
        with self._lock:
            if self.current is not failed or self._previous is None:
                return None
            self.current, self._previous = self._previous, None
            ref = _ref_of(failed.identity)
            self._rejected.add(ref)
            self._refusals.append(Refusal(ref, "inference_failed", f"{ref.model_id} {ref.version} failed on a "
                                                                   f"message and was rolled back"))
            return self.current

    def inference_failed(self, model: ModelSession, exc: Exception) -> None:
        """A message failed in `model`: roll back to the previous model when there is one."""
        restored = self.rollback(model)
        identity = model.identity
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if restored is not None:
            self._emit(ServerEvent(ROLLED_BACK, f"{identity.model_id} {identity.version} failed on a message "
                                                f"({detail}); rolled back to {restored.identity.version}",
                                   code="inference_failed", model=restored.identity, replaced=identity))
        else:
            self._emit(ServerEvent(INFERENCE_FAILED, f"inference failed ({detail})", code="inference_failed",
                                   model=identity))
