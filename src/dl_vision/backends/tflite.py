"""TensorFlow Lite backend (``format: tflite``).

Uses the first installed runtime that runs the model: ``ai_edge_litert``
(LiteRT, the successor package), ``tflite_runtime`` (small, common on robots)
or ``tensorflow.lite`` (full TensorFlow, which also has MediaPipe's custom ops).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from dl_vision.backends.base import Backend, TensorInfo, check_threads
from dl_vision.errors import BackendUnavailableError, ModelError

#: TFLite runtimes in the order they are tried. The small ones lack the custom ops some
#: MediaPipe models use (the selfie segmenter's ``Convolution2DTransposeBias``); TensorFlow's
#: interpreter has them, so a model needing one falls through to it.
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")

_LOG = logging.getLogger("dl_vision")


def _import_interpreter(runtime: str) -> Any:
    """The Interpreter class of one TFLite runtime; ImportError when it is not installed."""
    if runtime == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    if runtime == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    # TensorFlow's C++ start-up chatter is noise for a ROS node; the caller may override.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf.lite.Interpreter


def _installed_runtimes() -> List[str]:
    """Names of the installed TFLite runtimes, lightest first (nothing is imported)."""
    return [name for name in RUNTIMES if importlib.util.find_spec(name) is not None]


def _tensor_info(detail: Mapping[str, Any]) -> TensorInfo:
    shape = detail.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = detail["shape"]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quant = (float(scale), int(zero_point)) if scale else None
    return TensorInfo(detail["name"], tuple(int(d) for d in shape), detail["dtype"], quant)


class TFLiteBackend(Backend):
    """A ``.tflite`` model in a TFLite interpreter.

    Args:
        path: the ``.tflite`` file.
        threads: interpreter CPU threads (None: the runtime's default).

    Raises:
        BackendUnavailableError: no TFLite runtime is installed.
        ModelError: the file is missing or not a TFLite model.
    """

    runtime = "tflite"

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None) -> None:
        path = Path(path)
        check_threads(threads)
        if not path.is_file():
            raise ModelError("TFLite model file %s does not exist" % path)
        self._interpreter = self._load(path, threads)
        self.path = path
        self._lock = threading.Lock()
        self._input_details = self._interpreter.get_input_details()
        self._output_details = self._interpreter.get_output_details()
        self.inputs: List[TensorInfo] = [_tensor_info(d) for d in self._input_details]
        self.outputs: List[TensorInfo] = [_tensor_info(d) for d in self._output_details]

    def _load(self, path: Path, threads: Optional[int]) -> Any:
        """An interpreter for ``path`` from the first runtime that has all of the model's ops."""
        runtimes = _installed_runtimes()
        if not runtimes:
            raise BackendUnavailableError(
                "format tflite needs a TFLite runtime: expected ai-edge-litert, tflite-runtime or tensorflow, "
                "found none installed"
            )
        for position, runtime in enumerate(runtimes):
            try:
                interpreter_cls = _import_interpreter(runtime)
                with warnings.catch_warnings():
                    # tf.lite.Interpreter warns that it is deprecated in favour of LiteRT; it still works.
                    warnings.simplefilter("ignore")
                    interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
            except ImportError as err:  # installed but broken (e.g. built for another numpy)
                reason = "%s does not import: %s" % (runtime, err)
            except (ValueError, RuntimeError) as err:
                reason = " ".join(str(err).split())
                if "custom op" not in reason:
                    raise ModelError("%s is not a loadable TFLite model: %s" % (path, reason)) from err
                op = re.search(r"custom op:? (\w+)", reason)
                reason = "%s lacks the custom op %s" % (runtime, op.group(1) if op else "the model uses")
            else:
                return interpreter
            if position + 1 < len(runtimes):
                _LOG.info("%s: %s; trying %s", path.name, reason, runtimes[position + 1])
        raise ModelError(
            "%s cannot be loaded by the installed TFLite runtimes (%s): %s; "
            "TensorFlow's interpreter has MediaPipe's custom ops (pip install tensorflow)"
            % (path, ", ".join(runtimes), reason)
        )

    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run one inference; a batch larger than the model's resizes the input when its shape allows.

        Raises:
            ModelError: an input is missing or has the wrong shape or dtype.
        """
        feeds = {self.inputs[0].name: inputs} if isinstance(inputs, np.ndarray) else dict(inputs)
        with self._lock:  # one interpreter is not safe to call from two threads
            for info, detail in zip(self.inputs, self._input_details):
                if info.name not in feeds:
                    raise ModelError(
                        "TFLite input %r missing: expected inputs %s" % (info.name, [i.name for i in self.inputs])
                    )
                array = np.asarray(feeds[info.name])
                if array.dtype != info.dtype:
                    raise ModelError(
                        "TFLite input %r: expected dtype %s, found %s" % (info.name, info.dtype, array.dtype)
                    )
                current = tuple(self._interpreter.get_input_details()[self._index_of(detail)]["shape"])
                if array.shape != current:
                    self._resize(info, detail, array.shape)
                self._interpreter.set_tensor(detail["index"], array)
            try:
                self._interpreter.invoke()
            except (ValueError, RuntimeError) as err:
                raise ModelError("TFLite inference failed: %s" % " ".join(str(err).split())) from err
            return {d["name"]: np.array(self._interpreter.get_tensor(d["index"])) for d in self._output_details}

    def _index_of(self, detail: Mapping[str, Any]) -> int:
        return [d["index"] for d in self._input_details].index(detail["index"])

    def _resize(self, info: TensorInfo, detail: Mapping[str, Any], shape: Tuple[int, ...]) -> None:
        fits = len(shape) == len(info.shape) and all(d is None or d == s for d, s in zip(info.shape, shape))
        if not fits:
            raise ModelError("TFLite input %r: expected shape %s, found %s" % (info.name, info.shape, shape))
        try:
            self._interpreter.resize_tensor_input(detail["index"], list(shape))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelError("TFLite input %r cannot take shape %s: %s" % (info.name, shape, err)) from err

    def close(self) -> None:
        self._interpreter = None
