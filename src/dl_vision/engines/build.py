"""Build a serialized TensorRT engine from an ONNX file with the builder API (no trtexec).

The pip wheels of TensorRT ship no ``trtexec``, and 11.x dropped its ``--fp16/--int8`` flags;
the builder API works the same from Python on JetPack 5 (8.5) and on x86 (10.x, 11.x), with the
version branches in :mod:`dl_vision.engines.trt_api`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from dl_vision.errors import ConfigError, ModelError

LOG = logging.getLogger("dl_vision")

#: Builder scratch memory; TensorRT uses less when the tactics need less.
DEFAULT_WORKSPACE_MIB = 1024


class BatchProfile(NamedTuple):
    """The batch sizes an engine with a dynamic batch dimension accepts: min <= opt <= max.

    TensorRT tunes its kernels for ``opt``; a batch outside ``[min, max]`` is refused at run time.
    """

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """``"1:4:8"`` (or ``"4"`` for a fixed batch of 4).

        Raises:
            ConfigError: not ``MIN:OPT:MAX`` of positive integers in order.
        """
        parts = str(text).split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) == 1:
            values = values * 3
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise ConfigError("batch: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, found %r" % (text,))
        return cls(*values)

    def __str__(self) -> str:
        return "%d:%d:%d" % self


def profile_shapes(
    name: str, shape: Sequence[int], batch: Optional[BatchProfile]
) -> Optional[Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]:
    """The (min, opt, max) shapes of one network input, or None when its shape is static.

    Args:
        name: input name, for messages.
        shape: the ONNX input's dimensions, -1 for a dynamic one.
        batch: the batch profile asked for (None: batch 1 for a dynamic batch dimension).

    Raises:
        ModelError: a dimension other than the batch is dynamic, or a batch profile is given for a
            model whose batch is fixed.
    """
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims[1:]):
        raise ModelError(
            "ONNX input %r: shape %s has a dynamic dimension besides the batch: export the model with a fixed "
            "input size for TensorRT" % (name, dims)
        )
    if not dims or dims[0] >= 0:
        if batch is not None and (len(dims) == 0 or batch != BatchProfile(dims[0], dims[0], dims[0])):
            raise ModelError(
                "ONNX input %r: shape %s has a fixed batch, found --batch %s: export the model with a dynamic batch "
                "dimension" % (name, dims, batch)
            )
        return None
    batch = batch or BatchProfile(1, 1, 1)
    rest = tuple(dims[1:])
    return (batch.min,) + rest, (batch.opt,) + rest, (batch.max,) + rest


class NetworkInput(NamedTuple):
    """One network input as the ONNX parser sees it: name, dims (-1 dynamic), numpy dtype."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype


def build_serialized_engine(
    trt: Any,
    onnx_path: Path,
    precision: str,
    batch: Optional[BatchProfile] = None,
    calibration: Optional[Any] = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
) -> bytes:
    """Parse ``onnx_path`` and build an engine.

    Args:
        trt: the ``tensorrt`` module (see :func:`~dl_vision.engines.trt_api.import_tensorrt`).
        onnx_path: the ONNX model.
        precision: ``fp32``, ``fp16`` or ``int8`` (INT8 also enables FP16 for layers INT8 does not cover).
        batch: the batch profile for a dynamic batch dimension (default 1:1:1).
        calibration: for ``int8``, a callable ``(trt, inputs: List[NetworkInput], batch_size) -> calibrator``
            that makes the ``IInt8EntropyCalibrator2`` (see :mod:`dl_vision.engines.calibration`).
        workspace_mib: builder scratch memory limit.

    Returns:
        The serialized engine.

    Raises:
        ConfigError: a precision this TensorRT does not build (one line naming the alternative), or
            ``int8`` without calibration.
        ModelError: the parser rejects the ONNX, or the build fails.
    """
    from dl_vision.engines.trt_api import TrtFeatures, numpy_dtype

    features = TrtFeatures.of(trt.__version__)
    problem = features.precision_problem(precision)
    if problem:
        raise ConfigError(problem)
    if precision == "int8" and calibration is None:
        raise ConfigError("precision int8: expected calibration frames (--calibration BAG|FOLDER), found none")
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(features.network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError("%s: TensorRT's ONNX parser failed: %s" % (onnx_path, " | ".join(errors) or "no reason given"))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    inputs: List[NetworkInput] = []
    profile = builder.create_optimization_profile()
    dynamic = False
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shape = tuple(int(d) for d in tensor.shape)
        inputs.append(NetworkInput(tensor.name, shape, numpy_dtype(trt, tensor.dtype, tensor.name)))
        shapes = profile_shapes(tensor.name, shape, batch)
        if shapes is not None:
            profile.set_shape(tensor.name, *shapes)
            dynamic = True
    if batch is not None and not dynamic:
        profile_shapes(inputs[0].name, inputs[0].shape, batch)  # raises: the batch is fixed
    if dynamic:
        config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            LOG.warning("build_engine: this GPU has no fast FP16; the engine may be no faster than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if features.calibration_deprecated:
            LOG.info("build_engine: TensorRT %s deprecates calibration; it still works here", features.version_text)
        config.set_flag(trt.BuilderFlag.INT8)
        fixed_batch = inputs[0].shape[0] if inputs and inputs[0].shape else 1
        # Kept in a local until the build ends: TensorRT holds the calibrator without owning it.
        calibrator = calibration(trt, inputs, (batch or BatchProfile(1, 1, 1)).opt if dynamic else fixed_batch)
        config.int8_calibrator = calibrator
        if dynamic:
            config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(
            "%s: TensorRT %s could not build a %s engine (its log above says why)"
            % (onnx_path, features.version_text, precision)
        )
    return bytes(serialized)


def write_engine(data: bytes, out: Path) -> Path:
    """Write ``data`` to ``out`` atomically (a reader never sees half an engine)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(data)
    partial.replace(out)
    return out
