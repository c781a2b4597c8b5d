"""Inference runtimes behind one interface, picked by a model spec's ``format``.

Each backend module imports its runtime only when a model of that format is
loaded, so a robot without TensorRT (or TensorFlow) can still run the others.
To add a runtime, write a :class:`~dl_vision.backends.base.Backend` subclass
whose ``__init__(path, **runtime_options)`` loads the model, and register it in
:data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Dict, Type, Union

from dl_vision.backends.base import Backend, TensorInfo
from dl_vision.errors import ConfigError

#: ``format -> "module:Class"``, imported on first use.
BACKENDS: Dict[str, str] = {
    "keras": "dl_vision.backends.tensorflow:KerasBackend",
    "onnx": "dl_vision.backends.onnxruntime:OnnxRuntimeBackend",
    "saved_model": "dl_vision.backends.tensorflow:SavedModelBackend",
    "tensorrt": "dl_vision.backends.tensorrt:TensorRTBackend",
    "tflite": "dl_vision.backends.tflite:TFLiteBackend",
}

#: ``(format, runtime.engine) -> format`` whose backend runs the file: an ONNX model may run on ONNX
#: Runtime (the default) or be built into a cached TensorRT engine (see :mod:`dl_vision.engines.cache`).
ENGINES: Dict[tuple, str] = {("onnx", "onnxruntime"): "onnx", ("onnx", "tensorrt"): "tensorrt"}

__all__ = ["BACKENDS", "ENGINES", "Backend", "TensorInfo", "backend_class", "create_backend"]


def backend_class(fmt: str) -> Type[Backend]:
    """The backend class registered for ``fmt`` (imports its module, not its runtime).

    Raises:
        ConfigError: no backend is registered for ``fmt``.
    """
    try:
        target = BACKENDS[fmt]
    except KeyError:
        raise ConfigError("unknown model format %r: expected one of %s" % (fmt, ", ".join(sorted(BACKENDS)))) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_backend(fmt: str, path: Union[str, Path], **options: Any) -> Backend:
    """Load the model at ``path`` with the backend for ``fmt``.

    Args:
        fmt: model format (``tflite``, ``onnx``, ...).
        path: model file or directory.
        **options: the spec's ``runtime`` section (e.g. ``threads``, ``providers``); ``engine``
            picks another runtime for the format (see :data:`ENGINES`).

    Raises:
        ConfigError: unknown format, or an option the backend does not take.
        BackendUnavailableError: the runtime is not installed.
        ModelError: the file cannot be loaded.
    """
    engine = options.pop("engine", None)
    if engine is not None:
        if (fmt, engine) not in ENGINES:
            choices = [e for f, e in ENGINES if f == fmt]
            raise ConfigError(
                "runtime.engine: expected %s for format %s, found %r"
                % (" or ".join(choices) or "nothing (no alternative runtime)", fmt, engine)
            )
        fmt = ENGINES[(fmt, engine)]
    cls = backend_class(fmt)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if n not in ("self", "path") and p.kind is not p.VAR_POSITIONAL]
        for key in options:
            if key not in accepted:
                raise ConfigError(
                    "runtime.%s: the %s backend does not take this option; expected one of %s"
                    % (key, fmt, ", ".join(accepted) or "(none)")
                )
    return cls(Path(path), **options)
