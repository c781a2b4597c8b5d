"""TensorRT backend (``format: tensorrt``) for serialized engines (``.engine`` / ``.plan``).

For a Jetson (JetPack 5: TensorRT 8.5) or an x86 GPU (TensorRT 8.5 to 10). It
uses the name-based tensor API (``num_io_tensors``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) that TensorRT 8.5 introduced and
10 kept, and moves buffers with ``cuda-python`` (``pip install cuda-python``)
or, failing that, ``pycuda`` (JetPack's ``python3-pycuda``).

An engine is tied to the GPU model and TensorRT version that built it; build it
on the robot, e.g. ``trtexec --onnx=model.onnx --saveEngine=model.engine --fp16``
(for a dynamic batch add ``--minShapes/--optShapes/--maxShapes``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import numpy as np

from dl_vision.backends.base import Backend, TensorInfo, check_feeds
from dl_vision.errors import BackendUnavailableError, ConfigError, ModelError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

INSTALL_HINT = (
    "TensorRT's Python API (JetPack: `sudo apt install python3-libnvinfer`; x86: `pip install tensorrt`) "
    "and cuda-python (`pip install cuda-python`) or pycuda"
)


class _CudaPython:
    """Device buffers and a stream through cuda-python's runtime API."""

    def __init__(self, device: int) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python; ImportError propagates when absent
        self._rt = cudart
        self._check(cudart.cudaSetDevice(device), "cudaSetDevice(%d)" % device)
        self.stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result: Tuple[Any, ...], call: str) -> Any:
        err, rest = result[0], result[1:]
        if int(err) != 0:
            raise ModelError("TensorRT: CUDA call %s failed: %s" % (call, err))
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(nbytes), "cudaMalloc(%d)" % nbytes))

    def free(self, pointer: int) -> None:
        self._rt.cudaFree(pointer)

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, kind, self.stream), "memcpy")

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self.stream), "memcpy")

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._check(self._rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def enter(self) -> None:
        """Nothing to do: the runtime API binds the primary context per thread itself."""

    def leave(self) -> None:
        """See :meth:`enter`."""


class _PyCuda:
    """Device buffers and a stream through pycuda's driver API (a retained primary context)."""

    def __init__(self, device: int) -> None:
        import pycuda.driver as cuda  # ImportError propagates when absent

        cuda.init()
        self._cuda = cuda
        self._context = cuda.Device(device).retain_primary_context()
        self._context.push()
        try:
            self.stream = cuda.Stream()
        finally:
            self._context.pop()
        self._allocations: Dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._allocations.pop(pointer).free()

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(pointer, host, self.stream)

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        self._cuda.memcpy_dtoh_async(host, pointer, self.stream)

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def enter(self) -> None:
        """Make the context current in the calling thread (ROS workers are not the loading thread)."""
        self._context.push()

    def leave(self) -> None:
        self._context.pop()


def _cuda_buffers(device: int) -> Any:
    errors = []
    for cls in (_CudaPython, _PyCuda):
        try:
            return cls(device)
        except ImportError as err:
            errors.append(str(err))
    raise BackendUnavailableError(
        "format tensorrt needs %s: found no CUDA Python bindings (%s)" % (INSTALL_HINT, "; ".join(errors))
    )


class TensorRTBackend(Backend):
    """A serialized TensorRT engine on one GPU.

    Args:
        path: the ``.engine`` / ``.plan`` file.
        device: CUDA device index.

    Raises:
        BackendUnavailableError: TensorRT or the CUDA Python bindings are missing.
        ModelError: the file is missing or is not an engine this TensorRT can run on this GPU.
    """

    runtime = "tensorrt"

    def __init__(self, path: Union[str, Path], device: int = 0) -> None:
        path = Path(path)
        if isinstance(device, bool) or not isinstance(device, int) or device < 0:
            raise ConfigError("runtime.device: expected a CUDA device index >= 0, found %r" % (device,))
        if path.suffix.lower() not in ENGINE_SUFFIXES:
            raise ModelError(
                "TensorRT engine: expected a file ending in %s, found %s" % ("/".join(ENGINE_SUFFIXES), path)
            )
        if not path.is_file():
            raise ModelError("TensorRT engine file %s does not exist" % path)
        try:
            import tensorrt as trt
        except ImportError as err:
            raise BackendUnavailableError(
                "format tensorrt needs %s: found no tensorrt module (%s)" % (INSTALL_HINT, err)
            ) from err
        if not hasattr(trt.ICudaEngine, "num_io_tensors"):
            raise BackendUnavailableError(
                "format tensorrt: expected TensorRT 8.5 or newer (name-based tensor API), found %s" % trt.__version__
            )
        self._cuda = _cuda_buffers(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")  # engines with plugin layers (e.g. EfficientNMS)
        self._cuda.enter()
        try:
            self._runtime = trt.Runtime(self._logger)
            try:
                self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            except (RuntimeError, TypeError) as err:  # some versions raise rather than return None
                raise ModelError("%s is not a TensorRT engine: %s" % (path, " ".join(str(err).split()))) from err
            if self._engine is None:
                raise ModelError(
                    "%s: expected an engine built by TensorRT %s for this GPU, found one it cannot deserialize "
                    "(rebuild it on this machine; TensorRT's log above says why)" % (path, trt.__version__)
                )
            self._context = self._engine.create_execution_context()
        finally:
            self._cuda.leave()
        self.path = path
        self._lock = threading.Lock()
        self._buffers: Dict[str, Tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        self.inputs: List[TensorInfo] = []
        self.outputs: List[TensorInfo] = []
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            info = TensorInfo(
                name,
                tuple(int(d) for d in self._engine.get_tensor_shape(name)),
                trt.nptype(self._engine.get_tensor_dtype(name)),
            )
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(info)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least ``nbytes`` for tensor ``name``, grown when a larger batch arrives."""
        pointer, capacity = self._buffers.get(name, (0, 0))
        if capacity < nbytes:
            if pointer:
                self._cuda.free(pointer)
            pointer = self._cuda.malloc(max(nbytes, 1))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Copy inputs to the GPU, run the engine, copy outputs back.

        Raises:
            ModelError: an input does not match the engine (shape outside its
                optimisation profile included), or execution fails.
        """
        feeds = check_feeds("TensorRT", self.inputs, inputs)
        with self._lock:  # one execution context runs one inference at a time
            self._cuda.enter()
            try:
                for name, array in feeds.items():
                    host = np.ascontiguousarray(array)
                    feeds[name] = host
                    if not self._context.set_input_shape(name, host.shape):
                        raise ModelError(
                            "TensorRT input %r: shape %s is outside the engine's optimisation profile"
                            % (name, host.shape)
                        )
                    pointer = self._device_buffer(name, host.nbytes)
                    self._context.set_tensor_address(name, pointer)
                    self._cuda.to_device(pointer, host)
                results: Dict[str, np.ndarray] = {}
                for info in self.outputs:
                    shape = tuple(int(d) for d in self._context.get_tensor_shape(info.name))
                    if any(d < 0 for d in shape):
                        raise ModelError(
                            "TensorRT output %r: expected a shape known from the inputs, found %s (data-dependent)"
                            % (info.name, shape)
                        )
                    results[info.name] = np.empty(shape, dtype=info.dtype)
                    self._context.set_tensor_address(
                        info.name, self._device_buffer(info.name, results[info.name].nbytes)
                    )
                if not self._context.execute_async_v3(self._cuda.stream_handle):
                    raise ModelError("TensorRT execution failed (TensorRT's log above says why)")
                for name, host in results.items():
                    self._cuda.to_host(host, self._buffers[name][0])
                self._cuda.synchronize()
            finally:
                self._cuda.leave()
        return results

    def close(self) -> None:
        """Free the device buffers and the engine."""
        with self._lock:
            self._cuda.enter()
            try:
                for pointer, _ in self._buffers.values():
                    self._cuda.free(pointer)
            finally:
                self._cuda.leave()
            self._buffers.clear()
            self._context = None
            self._engine = None
