"""TensorFlow backends: SavedModel (``format: saved_model``) and Keras (``format: keras``).

A SavedModel runs through one of its signatures (``serving_default`` unless the
spec says otherwise); the TF2 Object Detection API exports its detectors this
way, with outputs named ``detection_boxes``, ``detection_scores``, ... A Keras
``.keras`` or legacy ``.h5`` file is loaded with ``safe_mode=True`` (no
arbitrary Python from the file) and without its training configuration.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from dl_vision.backends.base import Backend, TensorInfo, check_feeds
from dl_vision.errors import BackendUnavailableError, ConfigError, ModelError, one_line

LOGGER = logging.getLogger("dl_vision")

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def import_tensorflow() -> Any:
    """The ``tensorflow`` module, imported on first use.

    Raises:
        BackendUnavailableError: TensorFlow is not installed.
    """
    # TensorFlow's C++ start-up chatter is noise for a ROS node; the caller may override.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as err:
        raise BackendUnavailableError(
            "this model needs TensorFlow: expected `pip install tensorflow` (or NVIDIA's build on a Jetson), "
            "found it not installed (%s)" % err
        ) from err
    return tf


def tensorflow_device(tf: Any, device: Optional[str]) -> str:
    """Validate ``runtime.device`` and turn on memory growth on every GPU TensorFlow sees.

    Without memory growth TensorFlow takes (nearly) all GPU memory at start, leaving none to a
    TensorRT engine or another node on the same GPU.

    Args:
        tf: the ``tensorflow`` module.
        device: ``"CPU"``, ``"CPU:0"``, ``"GPU:N"`` (case-insensitive), or None for TensorFlow's choice.

    Returns:
        The device the model runs on, e.g. ``"/GPU:0"`` (TensorFlow's choice: the first GPU, else the CPU).

    Raises:
        ConfigError: a malformed device, or a GPU TensorFlow does not see.
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised by an earlier model: growth is set or fixed
            pass
    if device is None:
        return "/GPU:0" if gpus else "/CPU:0"
    match = re.fullmatch(r"/?(?:device:)?(CPU|GPU)(?::(\d+))?", str(device).strip(), re.IGNORECASE)
    if not match:
        raise ConfigError("runtime.device: expected CPU or GPU:N, found %r" % (device,))
    kind, index = match.group(1).upper(), int(match.group(2) or 0)
    if kind == "GPU" and index >= len(gpus):
        raise ConfigError(
            "runtime.device: expected %s, found %r (TensorFlow sees %d GPUs: tensorflow-cpu, or no CUDA libraries)"
            % ("CPU or GPU:0..%d" % (len(gpus) - 1) if gpus else "CPU", device, len(gpus))
        )
    return "/%s:%d" % (kind, index)


def _spec_info(name: str, spec: Any) -> TensorInfo:
    shape = tuple(spec.shape.as_list()) if spec.shape.rank is not None else ()
    return TensorInfo(name, shape, spec.dtype.as_numpy_dtype)


class _TensorFlowBackend(Backend):
    """What both TensorFlow backends share: the runtime name and the device they report."""

    runtime = "tensorflow"
    device = "/CPU:0"

    @property
    def provider(self) -> str:
        return "tensorflow on %s" % self.device


class SavedModelBackend(_TensorFlowBackend):
    """A TensorFlow SavedModel directory, run through one signature.

    Args:
        path: the SavedModel directory (holding ``saved_model.pb``).
        signature: signature key to run.
        device: ``CPU`` or ``GPU:N`` (see :func:`tensorflow_device`); None: TensorFlow's choice.

    Raises:
        BackendUnavailableError: TensorFlow is not installed.
        ModelError: the directory is missing, not a SavedModel, or lacks the signature.
    """

    def __init__(
        self, path: Union[str, Path], signature: str = "serving_default", device: Optional[str] = None
    ) -> None:
        path = Path(path)
        if not (path / "saved_model.pb").is_file():
            raise ModelError("SavedModel: expected a directory holding saved_model.pb, found %s" % path)
        tf = import_tensorflow()
        self._tf = tf
        self.device = tensorflow_device(tf, device)
        try:
            with tf.device(self.device):
                self._model = tf.saved_model.load(str(path))
        except (OSError, ValueError, RuntimeError, tf.errors.OpError) as err:
            raise ModelError("%s is not a loadable SavedModel: %s" % (path, one_line(err))) from err
        signatures = dict(self._model.signatures)
        if signature not in signatures:
            raise ModelError(
                "SavedModel %s: expected signature %r, found %s" % (path, signature, sorted(signatures) or "none")
            )
        self.path = path
        self._function = signatures[signature]
        input_specs = self._function.structured_input_signature[1]
        self.inputs: List[TensorInfo] = [_spec_info(name, input_specs[name]) for name in sorted(input_specs)]
        output_specs = self._function.structured_outputs
        self.outputs: List[TensorInfo] = [_spec_info(name, output_specs[name]) for name in sorted(output_specs)]

    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run the signature on one batch.

        Raises:
            ModelError: an input does not match the signature, or inference fails.
        """
        feeds = check_feeds("SavedModel", self.inputs, inputs)
        tf = self._tf
        try:
            with tf.device(self.device):
                outputs = self._function(**{name: tf.constant(array) for name, array in feeds.items()})
        except (ValueError, TypeError, tf.errors.OpError) as err:
            raise ModelError("SavedModel inference failed: %s" % one_line(err)) from err
        return {name: value.numpy() for name, value in outputs.items()}


class KerasBackend(_TensorFlowBackend):
    """A Keras model file (``.keras``, or legacy ``.h5``).

    Args:
        path: the model file.
        device: ``CPU`` or ``GPU:N`` (see :func:`tensorflow_device`); None: TensorFlow's choice.

    Raises:
        BackendUnavailableError: TensorFlow is not installed.
        ModelError: the file is missing, has another suffix, or cannot be loaded safely.
    """

    def __init__(self, path: Union[str, Path], device: Optional[str] = None) -> None:
        path = Path(path)
        if path.suffix.lower() not in KERAS_SUFFIXES:
            raise ModelError("Keras model: expected a file ending in %s, found %s" % ("/".join(KERAS_SUFFIXES), path))
        if not path.is_file():
            raise ModelError("Keras model file %s does not exist" % path)
        tf = import_tensorflow()
        self._tf = tf
        self.device = tensorflow_device(tf, device)
        load_model = tf.keras.models.load_model
        options: Dict[str, Any] = {"compile": False}  # no optimizer state: inference only
        # safe_mode (Keras >= 2.13) refuses Lambda layers carrying pickled Python; older Keras lacks it.
        if "safe_mode" in inspect.signature(load_model).parameters:
            options["safe_mode"] = True
        else:
            LOGGER.warning("Keras %s has no safe_mode: load only model files you trust", tf.keras.__version__)
        try:
            with tf.device(self.device):
                self._model = load_model(str(path), **options)
        except (OSError, ValueError, TypeError, RuntimeError) as err:
            raise ModelError("%s is not a loadable Keras model: %s" % (path, one_line(err))) from err
        self.path = path
        self.inputs: List[TensorInfo] = [
            TensorInfo(_tensor_name(t, "input_%d" % i), tuple(t.shape), _numpy_dtype(tf, t.dtype))
            for i, t in enumerate(self._model.inputs)
        ]
        self.outputs: List[TensorInfo] = [
            TensorInfo(name, tuple(t.shape), _numpy_dtype(tf, t.dtype))
            for name, t in zip(self._output_names(), self._model.outputs)
        ]

    def _output_names(self) -> List[str]:
        names = list(getattr(self._model, "output_names", None) or [])
        if len(names) != len(self._model.outputs):
            names = [_tensor_name(t, "output_%d" % i) for i, t in enumerate(self._model.outputs)]
        return names

    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run the model on one batch (inference mode).

        Raises:
            ModelError: an input does not match the model, or inference fails.
        """
        feeds = check_feeds("Keras", self.inputs, inputs)
        arrays = [feeds[info.name] for info in self.inputs]
        try:
            with self._tf.device(self.device):
                result = self._model(arrays if len(arrays) > 1 else arrays[0], training=False)
        except (ValueError, TypeError, self._tf.errors.OpError) as err:
            raise ModelError("Keras inference failed: %s" % one_line(err)) from err
        if isinstance(result, Mapping):
            return {str(name): np.asarray(value) for name, value in result.items()}
        values = result if isinstance(result, (list, tuple)) else [result]
        return {info.name: np.asarray(value) for info, value in zip(self.outputs, values)}


def _numpy_dtype(tf: Any, dtype: Any) -> np.dtype:
    """The numpy dtype of a Keras tensor's dtype: a ``tf.DType`` (Keras 2, TF <= 2.15) or a name (Keras 3)."""
    return np.dtype(tf.as_dtype(dtype).as_numpy_dtype)


def _tensor_name(tensor: Any, fallback: str) -> str:
    """A Keras tensor's name without the ``:0`` suffix TensorFlow appends."""
    name = str(getattr(tensor, "name", "") or fallback)
    return name.split(":")[0]
