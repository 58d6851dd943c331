"""Every error the inference node raises (all are kairo_ros KairoError).

    KairoError (kairo_ros.api.errors)
    └── InferenceError                       base of the inference node's own errors
        ├── ConfigError          a parameter value is unusable; names the parameter
        ├── WiringError          a model's wiring cannot be built here (unknown message
        │                        type or field, a field that is not numeric)
        ├── ModelRejectedError   a model file refused: not ONNX, no features metadata,
        │                        graph inputs/outputs not matching the wiring
        ├── BadInputError        one message on an input topic cannot be read
        │                        (wrong size, wrong image encoding or size)
        ├── CacheIntegrityError  a cached model file does not have its recorded sha256
        └── NoModelError         no version to serve: none active, nothing cached

Each class has a stable `code`, reported in diagnostics as `last error`. A malformed
features description is kairo_features.FeaturesError (a ValueError); a model whose
metadata holds one is refused with ModelRejectedError.
"""

from __future__ import annotations

from kairo_ros.api.errors import KairoError


class InferenceError(KairoError):
    """Base of the inference node's errors."""

    code = "inference_error"


class ConfigError(InferenceError):
    """A parameter value is unusable; the message names the parameter."""

    code = "invalid_parameter"


class WiringError(InferenceError):
    """A model's wiring cannot be built on this ROS install."""

    code = "wiring"


class ModelRejectedError(InferenceError):
    """A model file was refused before serving; the old model keeps serving."""

    code = "model_rejected"


class BadInputError(InferenceError):
    """One input message could not be read; it is counted as dropped."""

    code = "bad_input"


class CacheIntegrityError(InferenceError):
    """A cached model file does not have the sha256 recorded for it."""

    code = "cache_tampered"


class NoModelError(InferenceError):
    """There is no version to serve: none is active, and nothing usable is cached."""

    code = "no_model"
