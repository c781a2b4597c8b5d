"""INT8 calibration: frames through the spec's own pre-processor, in batches, to TensorRT's calibrator.

TensorRT measures each layer's activation range on the batches the calibrator hands it, so those
batches must be exactly what the model sees at run time: the frames go through
:class:`~dl_vision.preprocess.Preprocessor` built from the spec's ``input`` section (resize or
letterbox, colour order, normalisation, layout, dtype), as the nodes feed them. Calibration uses
``IInt8EntropyCalibrator2`` (TensorRT 8.5 to 10.x; 11.x removed calibration, see
:mod:`dl_vision.engines.trt_api`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, List

import numpy as np

from dl_vision.backends.base import TensorInfo
from dl_vision.engines.build import NetworkInput
from dl_vision.errors import ConfigError, ModelError
from dl_vision.preprocess import Preprocessor
from dl_vision.spec import InputSpec

LOG = logging.getLogger("dl_vision")


def calibration_batches(tensors: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Group pre-processed (1, ...) tensors into C-contiguous (batch_size, ...) batches.

    A last, incomplete batch is dropped (the engine's calibration shape is fixed) and logged.

    Raises:
        ConfigError: ``batch_size`` < 1.
        ModelError: the tensors differ in shape or dtype.
    """
    if batch_size < 1:
        raise ConfigError("calibration batch: expected a size >= 1, found %d" % batch_size)
    pending: List[np.ndarray] = []
    for tensor in tensors:
        if pending and (tensor.shape != pending[0].shape or tensor.dtype != pending[0].dtype):
            raise ModelError(
                "calibration: expected every frame as %s %s, found %s %s"
                % (pending[0].shape, pending[0].dtype, tensor.shape, tensor.dtype)
            )
        pending.append(tensor)
        if len(pending) == batch_size:
            yield np.ascontiguousarray(np.concatenate(pending, axis=0))
            pending = []
    if pending:
        LOG.info("calibration: dropped the last %d frames (fewer than a batch of %d)", len(pending), batch_size)


def preprocessed_frames(
    images: Iterable[np.ndarray], spec_input: InputSpec, network_input: NetworkInput
) -> Iterator[np.ndarray]:
    """Each BGR image as the (1, ...) tensor the model's first input takes, via the spec's pre-processor."""
    preprocessor = Preprocessor(spec_input, TensorInfo(network_input.name, network_input.shape, network_input.dtype))
    for image in images:
        tensor, _ = preprocessor(image)
        yield tensor


def calibrator_factory(
    cuda: Any, images: Iterable[np.ndarray], spec_input: InputSpec, min_batches: int = 1
) -> Callable[[Any, List[NetworkInput], int], Any]:
    """What :func:`~dl_vision.engines.build.build_serialized_engine` takes as ``calibration``.

    Args:
        cuda: the :class:`~dl_vision.backends.cuda_memory.CudaDevice` that holds the batch buffer.
        images: BGR uint8 frames (see :func:`dl_vision.image_sources.iter_images`).
        spec_input: the spec's ``input`` section.
        min_batches: fewer batches than this is an error (calibration on too little data is noise).

    Returns:
        ``make(trt, network_inputs, batch_size) -> calibrator``: an ``IInt8EntropyCalibrator2`` feeding
        batches of ``batch_size`` (the model's fixed batch, or the profile's OPT batch).
    """

    def make(trt: Any, inputs: List[NetworkInput], batch_size: int) -> Any:
        if len(inputs) != 1:
            raise ModelError(
                "calibration: expected a model with one image input, found %d inputs %s"
                % (len(inputs), [i.name for i in inputs])
            )
        batches = list(calibration_batches(preprocessed_frames(images, spec_input, inputs[0]), batch_size))
        if len(batches) < min_batches:
            raise ConfigError(
                "calibration: expected at least %d batches of %d frames, found %d batches"
                % (min_batches, batch_size, len(batches))
            )
        LOG.info("calibration: %d batches of %d frames", len(batches), batch_size)
        return _entropy_calibrator(trt, cuda, batches)

    return make


def _entropy_calibrator(trt: Any, cuda: Any, batches: List[np.ndarray]) -> Any:
    """An ``IInt8EntropyCalibrator2`` handing ``batches`` to TensorRT from one device buffer."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            with cuda.activate():
                self._host = cuda.pinned(batches[0].shape, batches[0].dtype)
                self._device = cuda.malloc(batches[0].nbytes)

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: List[str]) -> Any:
            batch = next(self._batches, None)
            if batch is None:
                return None
            with cuda.activate():
                np.copyto(self._host, batch)
                cuda.copy_to_device(self._device, self._host)
                cuda.synchronize()
            return [self._device]

        def read_calibration_cache(self) -> None:
            # No cache: a cache made from other frames would silently calibrate this engine.
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return EntropyCalibrator()
