"""Inference runtimes behind one interface, picked by a model spec's ``format``.

Each backend module imports its runtime only when a model of that format is
loaded, so a robot without TensorRT (or TensorFlow) can still run the others.
To add a runtime, write a :class:`~dl_vision.backends.base.Backend` subclass
whose ``__init__(path, **runtime_options)`` loads the model, and register it in
:data:`BACKENDS`; model specs accept its format from then on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple, Union

from dl_vision.backends.base import Backend, TensorInfo
from dl_vision.errors import ConfigError
from dl_vision.model_check import check_model_file
from dl_vision.registry import Registry

#: ``format -> "module:Class"``, imported on first use; the formats a spec may name.
BACKENDS = Registry(
    "backend",
    "format",
    "runtime",
    {
        "tflite": "dl_vision.backends.tflite:TFLiteBackend",
        "saved_model": "dl_vision.backends.tensorflow:SavedModelBackend",
        "keras": "dl_vision.backends.tensorflow:KerasBackend",
        "frozen_graph": "dl_vision.backends.frozen_graph:FrozenGraphBackend",
        "onnx": "dl_vision.backends.onnxruntime:OnnxRuntimeBackend",
        "tensorrt": "dl_vision.backends.tensorrt:TensorRTBackend",
    },
)

#: ``(format, runtime.engine) -> format`` whose backend runs the file: an ONNX model may run on ONNX
#: Runtime (the default) or be built into a cached TensorRT engine (see :mod:`dl_vision.engines.cache`).
ENGINES: Dict[Tuple[str, str], str] = {("onnx", "onnxruntime"): "onnx", ("onnx", "tensorrt"): "tensorrt"}

__all__ = ["BACKENDS", "ENGINES", "Backend", "TensorInfo", "create_backend"]


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
        ModelError: the file is missing, damaged (checked before the runtime parses it, see
            :mod:`dl_vision.model_check`) or cannot be loaded.
    """
    options = dict(options)
    engine = options.pop("engine", None)
    if engine is not None:
        if (fmt, engine) not in ENGINES:
            choices = [e for f, e in ENGINES if f == fmt]
            raise ConfigError(
                "runtime.engine: expected %s for format %s, found %r"
                % (" or ".join(choices) or "nothing (no alternative runtime)", fmt, engine)
            )
    runs_on = ENGINES.get((fmt, engine), fmt)
    BACKENDS.check_options(runs_on, options, ("path",))  # spec errors first, then the file
    check_model_file(fmt, path)
    return BACKENDS.create(runs_on, options, path=Path(path))
