"""TensorRT backend: a serialized engine (``format: tensorrt``), or an ONNX model built into a cached engine.

For a Jetson (JetPack 5: TensorRT 8.5) or an x86 GPU (TensorRT 8.5 to 11.x). It uses the
name-based tensor API every version from 8.5 has (``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); buffers, pinned host memory
and the stream live in a :class:`~dl_vision.backends.cuda_memory.CudaDevice` (cuda-python or
pycuda, whichever fits the driver).

Two ways in:

- ``format: tensorrt`` with ``file: model.engine``: an engine built elsewhere, by
  ``rosrun dl_vision build_engine`` on this machine (an engine runs only on the TensorRT version
  and GPU model that built it).
- ``format: onnx`` with ``runtime: {engine: tensorrt, precision: fp16, batch: "1:4:8"}``: the
  engine comes from ``$DL_VISION_CACHE/engines`` and is built there on first use (see
  :mod:`dl_vision.engines.cache`); INT8 needs calibration frames, so ``build_engine`` makes it first.

An engine's INT8 inputs and outputs carry no scale TensorRT can report back, so they need
``runtime.io_scales: {tensor name: scale}`` (``real = q * scale``): inputs are quantized by the
pre-processor, outputs come back dequantized as float32. Engines whose I/O is BF16 or FP8 (types
numpy lacks) are refused with a :class:`~dl_vision.errors.ModelError`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from dl_vision.backends.base import Backend, TensorInfo, check_feeds
from dl_vision.backends.cuda_memory import CudaDevice
from dl_vision.engines.trt_api import PRECISIONS, import_tensorrt, numpy_dtype
from dl_vision.errors import ConfigError, ModelError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_SUFFIX = ".onnx"


def _check_device(device: Any) -> int:
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise ConfigError("runtime.device: expected a CUDA device index >= 0, found %r" % (device,))
    return device


def _check_io_scales(io_scales: Any) -> Dict[str, float]:
    if io_scales is None:
        return {}
    if not isinstance(io_scales, Mapping) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in io_scales.values()
    ):
        raise ConfigError("runtime.io_scales: expected {tensor name: positive scale}, found %r" % (io_scales,))
    return {str(k): float(v) for k, v in io_scales.items()}


class TensorRTBackend(Backend):
    """A TensorRT engine on one GPU.

    Args:
        path: an ``.engine`` / ``.plan`` / ``.trt`` file, or an ``.onnx`` file to build (and cache) an
            engine from.
        device: CUDA device index.
        precision: ``fp32``, ``fp16`` or ``int8`` for an ONNX file (default ``fp32``); an engine file
            has its precision already.
        batch: ``"MIN:OPT:MAX"`` batch profile for an ONNX file with a dynamic batch (default 1:1:1).
        io_scales: ``{tensor name: scale}`` of INT8 inputs and outputs.

    Raises:
        BackendUnavailableError: TensorRT or a CUDA binding that fits the driver is missing.
        ConfigError: a bad runtime option, or a precision this TensorRT does not build.
        ModelError: the file is missing or is not an engine this TensorRT can run on this GPU.

    Attributes:
        engine_path: the engine file in use (in the cache for an ONNX file).
        gpu: ``(name, (compute capability major, minor))`` of the device.
    """

    runtime = "tensorrt"

    def __init__(
        self,
        path: Union[str, Path],
        device: int = 0,
        precision: Optional[str] = None,
        batch: Optional[str] = None,
        io_scales: Optional[Mapping[str, float]] = None,
    ) -> None:
        path = Path(path)
        device = _check_device(device)
        self._io_scales = _check_io_scales(io_scales)
        is_onnx = path.suffix.lower() == ONNX_SUFFIX
        if not is_onnx and path.suffix.lower() not in ENGINE_SUFFIXES:
            raise ModelError(
                "TensorRT: expected an engine file ending in %s or an .onnx model, found %s"
                % ("/".join(ENGINE_SUFFIXES), path)
            )
        if not is_onnx and (precision is not None or batch is not None):
            raise ConfigError(
                "runtime.precision/batch: an engine file has its precision and batch range built in; "
                "they apply to ONNX models built on first use (format: onnx, runtime.engine: tensorrt), found %s" % path
            )
        if precision is not None and precision not in PRECISIONS:
            raise ConfigError("runtime.precision: expected one of %s, found %r" % ("|".join(PRECISIONS), precision))
        if not path.is_file():
            raise ModelError("TensorRT: model file %s does not exist" % path)
        trt = import_tensorrt("format tensorrt" if not is_onnx else "runtime.engine tensorrt")
        self._trt = trt
        self._cuda = CudaDevice(device)
        try:
            self.gpu: Tuple[str, Tuple[int, int]] = self._cuda.properties()
            self.engine_path = self._engine_for_onnx(path, precision or "fp32", batch) if is_onnx else path
            self._load()
        except BaseException:
            self._cuda.close()
            raise
        self.path = path
        self.precision = precision or ("fp32" if is_onnx else None)
        self._lock = threading.Lock()
        self._device_buffers: Dict[str, Tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)
        self._host_buffers: Dict[str, np.ndarray] = {}  # name -> pinned uint8 buffer

    def _engine_for_onnx(self, onnx: Path, precision: str, batch: Optional[str]) -> Path:
        """The cached engine for ``onnx``, built now when this key has none (not for INT8)."""
        from dl_vision.engines.build import BatchProfile, build_serialized_engine
        from dl_vision.engines.cache import cached_engine, engine_key
        from dl_vision.engines.trt_api import TrtFeatures

        trt = self._trt
        problem = TrtFeatures.of(trt.__version__).precision_problem(precision)
        if problem:
            raise ConfigError("runtime.%s" % problem)
        profile = None if batch is None else BatchProfile.parse(batch)
        key = engine_key(onnx, precision, profile, trt.__version__, self.gpu[0], self.gpu[1])

        def build() -> bytes:
            with self._cuda.activate():  # the builder works on the calling thread's current device
                return build_serialized_engine(trt, onnx, precision, profile)

        return cached_engine(key, onnx, None if precision == "int8" else build)

    def _load(self) -> None:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")  # engines with plugin layers (e.g. EfficientNMS)
        with self._cuda.activate():
            self._runtime = trt.Runtime(self._logger)
            try:
                self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            except (RuntimeError, TypeError) as err:  # some versions raise rather than return None
                raise ModelError(
                    "%s is not a TensorRT engine: %s" % (self.engine_path, " ".join(str(err).split()))
                ) from err
            if self._engine is None:
                raise ModelError(
                    "%s: expected an engine built by TensorRT %s for this GPU (%s), found one it cannot deserialize "
                    "(rebuild it on this machine with build_engine; TensorRT's log above says why)"
                    % (self.engine_path, trt.__version__, self.gpu[0])
                )
            self._context = self._engine.create_execution_context()
        self.inputs: List[TensorInfo] = []
        self.outputs: List[TensorInfo] = []
        self._output_dtypes: Dict[str, np.dtype] = {}  # as the engine writes them (INT8 before dequantizing)
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            dtype = numpy_dtype(trt, self._engine.get_tensor_dtype(name), name)
            scale = self._io_scales.get(name)
            if dtype == np.int8 and scale is None:
                raise ModelError(
                    "TensorRT tensor %r is INT8: expected its scale in runtime.io_scales {%s: scale} "
                    "(real = q * scale), found none" % (name, name)
                )
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                quantization = (scale, 0) if dtype == np.int8 else None
                self.inputs.append(TensorInfo(name, shape, dtype, quantization))
            else:
                self._output_dtypes[name] = dtype
                self.outputs.append(TensorInfo(name, shape, np.float32 if dtype == np.int8 else dtype))

    @property
    def provider(self) -> str:
        """Where inference runs, e.g. ``"tensorrt fp16 on GPU 0 (Orin, sm_87)"``."""
        name, (major, minor) = self.gpu
        precision = "%s " % self.precision if self.precision else ""
        return "tensorrt %son GPU %d (%s, sm_%d%d)" % (precision, self._cuda.device, name, major, minor)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least ``nbytes`` for tensor ``name``, grown when a larger batch arrives."""
        pointer, capacity = self._device_buffers.get(name, (0, 0))
        if capacity < nbytes:
            if pointer:
                self._cuda.free(pointer)
            pointer = self._cuda.malloc(nbytes)
            self._device_buffers[name] = (pointer, nbytes)
        return pointer

    def _host_buffer(self, name: str, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A pinned host array of ``shape``/``dtype`` for tensor ``name`` (reused, grown when needed)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        buffer = self._host_buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                self._cuda.free_pinned(buffer)
            buffer = self._cuda.pinned((max(nbytes, 1),), np.uint8)
            self._host_buffers[name] = buffer
        return buffer[:nbytes].view(dtype).reshape(shape)

    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Copy inputs to the GPU, run the engine, copy outputs back (on any thread).

        Raises:
            ModelError: an input does not match the engine (shape outside its
                optimisation profile included), or execution fails.
        """
        feeds = check_feeds("TensorRT", self.inputs, inputs)
        with self._lock, self._cuda.activate():  # one execution context runs one inference at a time
            context = self._context
            if context is None:
                raise ModelError("TensorRT: the engine was closed")
            for name, array in feeds.items():
                if not context.set_input_shape(name, array.shape):
                    raise ModelError(
                        "TensorRT input %r: shape %s is outside the engine's optimisation profile" % (name, array.shape)
                    )
                host = self._host_buffer(name, array.shape, array.dtype)
                np.copyto(host, array)
                pointer = self._device_buffer(name, host.nbytes)
                context.set_tensor_address(name, pointer)
                self._cuda.copy_to_device(pointer, host)
            staged: Dict[str, np.ndarray] = {}
            for info in self.outputs:
                shape = tuple(int(d) for d in context.get_tensor_shape(info.name))
                if any(d < 0 for d in shape):
                    raise ModelError(
                        "TensorRT output %r: expected a shape known from the inputs, found %s (data-dependent)"
                        % (info.name, shape)
                    )
                staged[info.name] = self._host_buffer(info.name, shape, self._output_dtypes[info.name])
                context.set_tensor_address(info.name, self._device_buffer(info.name, staged[info.name].nbytes))
            if not context.execute_async_v3(self._cuda.stream_handle):
                raise ModelError("TensorRT execution failed (TensorRT's log above says why)")
            for name, host in staged.items():
                self._cuda.copy_to_host(host, self._device_buffers[name][0])
            self._cuda.synchronize()
            # Copies: the pinned buffers are reused by the next call.
            return {name: self._dequantized(name, host) for name, host in staged.items()}

    def _dequantized(self, name: str, host: np.ndarray) -> np.ndarray:
        if host.dtype == np.int8:
            return host.astype(np.float32) * np.float32(self._io_scales[name])
        return host.copy()

    def close(self) -> None:
        """Release the engine, the device and pinned buffers and the stream. Idempotent."""
        with self._lock:
            if self._context is None:
                return
            with self._cuda.activate():
                self._context = None  # TensorRT objects go before the memory they use
                self._engine = None
                self._runtime = None
            self._device_buffers.clear()
            self._host_buffers.clear()
            self._cuda.close()
