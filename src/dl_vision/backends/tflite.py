"""TensorFlow Lite backend (``format: tflite``).

Uses the first interpreter that imports: ``ai_edge_litert`` (LiteRT, the
successor package), ``tflite_runtime`` (small, common on robots) or
``tensorflow.lite`` (full TensorFlow).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from dl_vision.backends.base import Backend, TensorInfo
from dl_vision.errors import BackendUnavailableError, ConfigError, ModelError


def _interpreter_class() -> Tuple[Any, str]:
    """The Interpreter class of the first installed TFLite runtime, and that runtime's name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    # TensorFlow's C++ start-up chatter is noise for a ROS node; the caller may override.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as err:
        raise BackendUnavailableError(
            "format tflite needs a TFLite runtime: expected ai-edge-litert, tflite-runtime or tensorflow, "
            "found none installed (%s)" % err
        ) from err
    return tf.lite.Interpreter, "tensorflow"


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
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError("runtime.threads: expected a positive integer, found %r" % (threads,))
        if not path.is_file():
            raise ModelError("TFLite model file %s does not exist" % path)
        interpreter_cls, self.runtime_module = _interpreter_class()
        try:
            with warnings.catch_warnings():
                # tf.lite.Interpreter warns that it is deprecated in favour of LiteRT; it still works.
                warnings.simplefilter("ignore")
                self._interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelError("%s is not a loadable TFLite model: %s" % (path, " ".join(str(err).split()))) from err
        self.path = path
        self._lock = threading.Lock()
        self._input_details = self._interpreter.get_input_details()
        self._output_details = self._interpreter.get_output_details()
        self.inputs: List[TensorInfo] = [_tensor_info(d) for d in self._input_details]
        self.outputs: List[TensorInfo] = [_tensor_info(d) for d in self._output_details]

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
