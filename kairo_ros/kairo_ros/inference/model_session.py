"""An onnxruntime session that has been checked against its wiring before it serves.

`ModelSession.load` refuses, with a ModelRejectedError that says what to do,
a file that is not ONNX, one without the features description in its
metadata, and one whose graph inputs or outputs (names, element types,
shapes) differ from what that description (and so the wiring) expects.
A loaded session is warmed up, so the first real message does not pay for
onnxruntime's lazy initialisation.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from kairo_features.schema import (
    DEFAULT_MAX_DETECTIONS,
    DETECTION_ROW,
    META_MODEL_ID,
    META_MODEL_VERSION,
    Features,
    FeaturesError,
    features_from_metadata,
)
from kairo_ros.inference.errors import ConfigError, ModelRejectedError

_PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                     "tensorrt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider"}
WARM_UP_RUNS = 5


def resolve_providers(requested: Sequence[str]) -> list[str]:
    """Execution providers to ask onnxruntime for, in order, always ending with CPU.

    Empty: CUDA when this onnxruntime has it, else CPU. Short names (cpu,
    cuda) are accepted; a provider this onnxruntime lacks is a ConfigError.
    """
    available = ort.get_available_providers()
    if not requested:
        chosen = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    else:
        chosen = []
        for name in requested:
            full = _PROVIDER_ALIASES.get(name.lower(), name)
            if full not in available:
                raise ConfigError(f"providers: {name!r} is not available in this onnxruntime "
                                  f"(available: {', '.join(available)})")
            chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def sha256_of_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """What a served model is, as reported in predictions and diagnostics."""

    model_id: str
    version: str
    sha256: str
    path: str


def _dims(shape: Sequence[Any]) -> list[int | None]:
    """Graph dims with symbolic or unknown ones as None."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def output_shapes(features: Features) -> dict[str, tuple[int, ...]]:
    """The graph outputs the wiring reads, by name, with their per-sample shapes."""
    if features.is_detection:  # rows (x1, y1, x2, y2, score, class_index), NMS done in the graph
        rows = (features.max_detections or DEFAULT_MAX_DETECTIONS, DETECTION_ROW)
        return {name: rows for name in features.graph_output_names()}
    return {e.name: e.shape for e in features.outputs}


def check_graph(session: ort.InferenceSession, features: Features, where: str) -> None:
    """Refuse a graph whose inputs or outputs differ from the features description."""
    graph_inputs = {i.name: i for i in session.get_inputs()}
    expected_inputs = [e.name for e in features.inputs]
    extra = sorted(set(graph_inputs) - set(expected_inputs))
    if extra:
        raise ModelRejectedError(f"{where}: graph input(s) {', '.join(extra)} are not in the wiring "
                                 f"({', '.join(expected_inputs)}); re-export the model with matching features")
    for entry in features.inputs:
        graph = graph_inputs.get(entry.name)
        if graph is None:
            raise ModelRejectedError(f"{where}: the wiring's input {entry.name!r} is not a graph input "
                                     f"(graph inputs: {', '.join(graph_inputs) or 'none'})")
        _check_tensor(graph, entry.shape, f"{where}: input {entry.name!r}")
    graph_outputs = {o.name: o for o in session.get_outputs()}
    for name, shape in output_shapes(features).items():
        graph = graph_outputs.get(name)
        if graph is None:
            raise ModelRejectedError(f"{where}: the wiring needs graph output {name!r}; the graph has "
                                     f"{', '.join(graph_outputs) or 'none'}")
        _check_tensor(graph, shape, f"{where}: output {name!r}")


def _check_tensor(arg: Any, shape: tuple[int, ...], what: str) -> None:
    if arg.type != "tensor(float)":
        raise ModelRejectedError(f"{what} is {arg.type}; the wiring needs tensor(float) (float32)")
    dims = _dims(arg.shape)
    want = [None, *shape]
    if len(dims) != len(want) or any(d is not None and w is not None and d != w for d, w in zip(dims, want,
                                                                                                strict=True)):
        raise ModelRejectedError(f"{what} has shape {list(arg.shape)}; the wiring needs [batch, "
                                 f"{', '.join(map(str, shape))}]")
    if dims[0] not in (None, 1):
        raise ModelRejectedError(f"{what} has a fixed batch of {dims[0]}; one sample per message needs 1 or dynamic")


class ModelSession:
    """A checked, warmed-up onnxruntime session and the identity of its model.

    Runs go through one IOBinding over buffers made once: the inputs are
    copied into fixed arrays and the outputs land in fixed arrays, which
    saves onnxruntime's per-run checks and allocations (about a third of a
    small model's run). So `run` is for one thread at a time, and what it
    returns is overwritten by the next run.
    """

    def __init__(self, session: ort.InferenceSession, features: Features, identity: ModelIdentity) -> None:
        self.session = session
        self.features = features
        self.identity = identity
        self.output_names = list(features.graph_output_names())
        self.provider = session.get_providers()[0]
        shapes = output_shapes(features)
        self._inputs = {e.name: np.zeros((1, *e.shape), dtype=np.float32) for e in features.inputs}
        self._outputs = [np.zeros((1, *shapes[name]), dtype=np.float32) for name in self.output_names]
        self._binding = session.io_binding()
        for name, buffer in self._inputs.items():
            self._binding.bind_input(name, "cpu", 0, np.float32, list(buffer.shape), buffer.ctypes.data)
        for name, buffer in zip(self.output_names, self._outputs, strict=True):
            self._binding.bind_output(name, "cpu", 0, np.float32, list(buffer.shape), buffer.ctypes.data)

    @classmethod
    def load(cls, path: pathlib.Path, providers: Sequence[str], intra_op_threads: int,
             expected: Features | None = None, sha256: str = "", model_id: str = "",
             version: str = "") -> ModelSession:
        """Load, check and warm up a model; ModelRejectedError when it cannot serve.

        `sha256`: when given, the file's bytes must have it. `expected`: the
        features of the model serving now; a new model must keep the same
        wiring to be swapped in. `model_id`/`version` fill in what the file's
        metadata lacks (a model_path file may have none).
        """
        where = f"model {path}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelRejectedError(f"{where}: cannot read it ({exc.strerror or exc}); check model_path") from None
        actual_sha256 = hashlib.sha256(data).hexdigest()
        if sha256 and actual_sha256 != sha256:
            raise ModelRejectedError(f"{where} has sha256 {actual_sha256[:12]}..., but {model_id or 'the model'} "
                                     f"{version} has {sha256[:12]}...: the file is not the version asked for "
                                     f"(altered or truncated); it is downloaded again on the next check")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(data, options, providers=list(providers))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types for a bad file
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelRejectedError(f"{where} is not a loadable ONNX model ({first_line}); "
                                     f"point model_path at a model exported by the backend") from None
        metadata: Mapping[str, str] = session.get_modelmeta().custom_metadata_map
        try:
            features = features_from_metadata(metadata)
        except FeaturesError as exc:
            raise ModelRejectedError(f"{where}: {exc}") from None
        if expected is not None and features.wiring_key() != expected.wiring_key():
            raise ModelRejectedError(f"{where}: its features description wires different topics, types or "
                                     f"shapes than the model serving now; restart the node to adopt it")
        check_graph(session, features, where)
        identity = ModelIdentity(
            model_id=metadata.get(META_MODEL_ID) or model_id,
            version=metadata.get(META_MODEL_VERSION) or version,
            sha256=actual_sha256,
            path=str(path),
        )
        if model_id and identity.model_id != model_id or version and identity.version != version:
            raise ModelRejectedError(f"{where}: its metadata says {identity.model_id} {identity.version}, "
                                     f"but {model_id} {version} was asked for; the file is not the expected one")
        model = cls(session, features, identity)
        model.warm_up()
        return model

    def warm_up(self) -> None:
        feeds = {e.name: np.zeros((1, *e.shape), dtype=np.float32) for e in self.features.inputs}
        for _ in range(WARM_UP_RUNS):
            self.run(feeds)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One sample ([1, *shape] per input) through the graph; outputs in `output_names` order,
        valid until the next run."""
        for name, buffer in self._inputs.items():
            np.copyto(buffer, feeds[name], casting="same_kind")
        self.session.run_with_iobinding(self._binding)
        return self._outputs
