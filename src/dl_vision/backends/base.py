"""The one interface every inference runtime implements: tensors in, named tensors out."""

from __future__ import annotations

import abc
import dataclasses
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from dl_vision.errors import ConfigError, ModelError

#: Most inference threads a spec may ask for: more than any robot has cores, and far below the
#: counts (100,000) at which TFLite hangs creating its thread pool.
MAX_THREADS = 256


def check_threads(threads: Optional[int]) -> None:
    """Check a spec's ``runtime.threads``: None (the runtime's default) or an integer in 1..MAX_THREADS.

    Raises:
        ConfigError: naming the value found.
    """
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS
    ):
        raise ConfigError("runtime.threads: expected an integer in 1..%d, found %r" % (MAX_THREADS, threads))


@dataclasses.dataclass
class TensorInfo:
    """Name, shape and dtype of one model input or output.

    Attributes:
        name: tensor name as the runtime reports it.
        shape: dimensions; ``None`` marks a dynamic one (batch, often; negative sizes become None).
        dtype: numpy dtype the runtime expects or returns.
        quantization: ``(scale, zero_point)`` for quantized tensors, else None.
    """

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: np.dtype
    quantization: Optional[Tuple[float, int]] = None

    def __post_init__(self) -> None:
        self.shape = tuple(None if (d is None or (isinstance(d, int) and d < 0)) else d for d in self.shape)
        self.dtype = np.dtype(self.dtype)


def check_feeds(
    runtime: str, inputs: List[TensorInfo], feeds: Union[np.ndarray, Mapping[str, np.ndarray]]
) -> Dict[str, np.ndarray]:
    """Name the arrays for a model's inputs and check them against the model.

    Args:
        runtime: runtime name for messages (``"onnxruntime"``, ...).
        inputs: the model's inputs.
        feeds: the first input's array, or ``{input name: array}``.

    Returns:
        ``{input name: array}`` for every model input.

    Raises:
        ModelError: an input is missing, or an array's rank, fixed dimensions or
            dtype differ from the model's.
    """
    named = {inputs[0].name: feeds} if isinstance(feeds, np.ndarray) else dict(feeds)
    checked = {}
    for info in inputs:
        if info.name not in named:
            raise ModelError(
                "%s input %r missing: expected inputs %s, found %s"
                % (runtime, info.name, [i.name for i in inputs], sorted(named))
            )
        array = np.asarray(named[info.name])
        fits = array.ndim == len(info.shape) and all(d is None or d == s for d, s in zip(info.shape, array.shape))
        if not fits:
            raise ModelError("%s input %r: expected shape %s, found %s" % (runtime, info.name, info.shape, array.shape))
        if array.dtype != info.dtype:
            raise ModelError("%s input %r: expected dtype %s, found %s" % (runtime, info.name, info.dtype, array.dtype))
        checked[info.name] = array
    return checked


class Backend(abc.ABC):
    """A loaded model in one runtime.

    Subclasses import their runtime lazily (inside ``__init__``) and raise
    :class:`~dl_vision.errors.BackendUnavailableError` when it is missing and
    :class:`~dl_vision.errors.ModelError` when the file cannot be loaded.
    """

    #: Short runtime name, e.g. ``"tflite"``, ``"onnxruntime"``.
    runtime = ""

    inputs: List[TensorInfo]
    outputs: List[TensorInfo]

    @property
    def provider(self) -> str:
        """Where inference really runs, for diagnostics and ``doctor`` (e.g. ``"CUDAExecutionProvider"``).

        The runtime's name unless the backend knows more (the ONNX Runtime provider that started,
        the TensorRT precision and GPU, the TensorFlow device).
        """
        return self.runtime

    @property
    def supports_batch(self) -> bool:
        """True when the first input's batch dimension may exceed 1."""
        return bool(self.inputs) and self.inputs[0].shape[:1] in ((None,),)

    @abc.abstractmethod
    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run one inference.

        Args:
            inputs: the first input's array, or ``{input name: array}``; arrays
                already have the model's layout and dtype (pre-processing is not
                the backend's job).

        Returns:
            ``{output name: array}`` for every model output.
        """

    def close(self) -> None:  # noqa: B027 - optional hook; most runtimes free on garbage collection
        """Release runtime resources (GPU memory, sessions)."""
