"""One CUDA device's stream, device buffers and pinned host buffers, through cuda-python or pycuda.

TensorRT takes device pointers and a stream handle; it allocates nothing for the caller. This
module owns those: :class:`CudaDevice` wraps either binding behind the same small API, so the
TensorRT backend and the INT8 calibrator never see which one is in use, and it can be exercised
with cuda-python alone (no TensorRT), as ``test/gpu/test_cuda_memory.py`` does.

Which binding: cuda-python (``cuda-bindings``) when its major version is not newer than the
CUDA version the driver supports (cuda-bindings 13 needs a CUDA 13 driver, 12 a CUDA 12 one; an
older major runs on a newer driver), else pycuda (JetPack 5's CUDA 11.4 with the pycuda built
on the Jetson). Host buffers are page-locked, so copies run asynchronously on the stream;
every CUDA call's status is checked, and :meth:`CudaDevice.close` frees everything and destroys
the stream.

Threads: the runtime API keeps the current device per thread, and pycuda a context stack per
thread, so each thread that calls the GPU (a ROS worker thread, not the one that loaded the
model) enters :meth:`CudaDevice.activate` first.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from dl_vision.errors import BackendUnavailableError, ModelError

CUDA_PYTHON = "cuda-python"
PYCUDA = "pycuda"

INSTALL_HINT = (
    "cuda-python whose major version matches the driver's CUDA (`pip install 'cuda-python==12.*'` for a "
    "CUDA 12 driver) or pycuda (JetPack: `pip install pycuda` with /usr/local/cuda/bin on PATH)"
)


def choose_binding(bindings_major: Optional[int], driver_cuda_major: Optional[int], has_pycuda: bool) -> str:
    """Which CUDA binding to use.

    Args:
        bindings_major: cuda-python's major version, or None when it is not installed.
        driver_cuda_major: the newest CUDA major the driver supports (None: unknown, e.g. no driver).
        has_pycuda: pycuda imports.

    Returns:
        :data:`CUDA_PYTHON` or :data:`PYCUDA`.

    Raises:
        BackendUnavailableError: neither fits, naming what was found.
    """
    if bindings_major is not None and driver_cuda_major is not None and bindings_major <= driver_cuda_major:
        return CUDA_PYTHON
    if has_pycuda:
        return PYCUDA
    if bindings_major is None:
        found = "neither cuda-python nor pycuda is installed"
    elif driver_cuda_major is None:
        found = "cuda-python %d is installed but no CUDA driver answers" % bindings_major
    else:
        found = "cuda-python %d needs a CUDA %d driver, the driver supports CUDA %d, and pycuda is not installed" % (
            bindings_major,
            bindings_major,
            driver_cuda_major,
        )
    raise BackendUnavailableError("CUDA from Python: expected %s; found %s" % (INSTALL_HINT, found))


def _import_cudart() -> Optional[Any]:
    """cuda-python's runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _distribution_major(*names: str) -> Optional[int]:
    from importlib import metadata  # Python 3.8 has it

    for name in names:
        try:
            return int(metadata.version(name).split(".")[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return None


def _stream_handle_of(stream: Any) -> int:
    """The ``cudaStream_t`` address; ``int(stream)`` is deprecated from cuda-bindings 12.9.1/13."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(stream)
    return int(get_cuda_native_handle(stream))


class _CudaPythonApi:
    """The calls :class:`CudaDevice` needs, through cuda-python's runtime API."""

    name = CUDA_PYTHON

    def __init__(self, cudart: Any, device: int) -> None:
        self._rt = cudart
        self._device = device
        self.activate()
        self._stream = self._call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_handle = _stream_handle_of(self._stream)

    def _call(self, result: Any, what: str) -> Any:
        result = result if isinstance(result, tuple) else (result,)
        err, rest = result[0], result[1:]
        if err != self._rt.cudaError_t.cudaSuccess:
            raise ModelError("CUDA: %s failed on GPU %d: %s" % (what, self._device, getattr(err, "name", err)))
        return rest[0] if len(rest) == 1 else rest

    def activate(self) -> None:
        self._call(self._rt.cudaSetDevice(self._device), "cudaSetDevice(%d)" % self._device)

    def deactivate(self) -> None:
        """Nothing to undo: the runtime API keeps one current device per thread."""

    def properties(self) -> Tuple[str, Tuple[int, int]]:
        prop = self._call(self._rt.cudaGetDeviceProperties(self._device), "cudaGetDeviceProperties")
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        return name, (int(prop.major), int(prop.minor))

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self._rt.cudaMalloc(nbytes), "cudaMalloc(%d bytes)" % nbytes))

    def free(self, pointer: int) -> None:
        self._call(self._rt.cudaFree(pointer), "cudaFree")

    def malloc_host(self, nbytes: int) -> Tuple[int, np.ndarray]:
        pointer = int(self._call(self._rt.cudaMallocHost(nbytes), "cudaMallocHost(%d bytes)" % nbytes))
        raw = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
        return pointer, raw

    def free_host(self, pointer: int) -> None:
        self._call(self._rt.cudaFreeHost(pointer), "cudaFreeHost")

    def copy_to_device(self, pointer: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(
            self._rt.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, kind, self._stream), "cudaMemcpyAsync"
        )

    def copy_to_host(self, host: np.ndarray, pointer: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(
            self._rt.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self._stream), "cudaMemcpyAsync"
        )

    def synchronize(self) -> None:
        self._call(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def destroy_stream(self) -> None:
        self._call(self._rt.cudaStreamDestroy(self._stream), "cudaStreamDestroy")


class _PyCudaApi:
    """The calls :class:`CudaDevice` needs, through pycuda's driver API and the device's primary context."""

    name = PYCUDA

    def __init__(self, driver: Any, device: int) -> None:
        self._cuda = driver
        self._device = driver.Device(device)
        self._context = self._device.retain_primary_context()
        self._allocations: Dict[int, Any] = {}
        self.activate()
        try:
            self._stream = driver.Stream()
        finally:
            self.deactivate()
        self.stream_handle = int(self._stream.handle)

    def _call(self, what: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except self._cuda.Error as err:
            raise ModelError("CUDA: %s failed: %s" % (what, " ".join(str(err).split()))) from err

    def activate(self) -> None:
        self._context.push()

    def deactivate(self) -> None:
        self._cuda.Context.pop()

    def properties(self) -> Tuple[str, Tuple[int, int]]:
        major, minor = self._device.compute_capability()
        return str(self._device.name()), (int(major), int(minor))

    def malloc(self, nbytes: int) -> int:
        allocation = self._call("mem_alloc(%d bytes)" % nbytes, self._cuda.mem_alloc, nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._call("mem free", self._allocations.pop(pointer).free)

    def malloc_host(self, nbytes: int) -> Tuple[int, np.ndarray]:
        raw = self._call("pagelocked_empty(%d bytes)" % nbytes, self._cuda.pagelocked_empty, (nbytes,), np.uint8)
        self._allocations[raw.ctypes.data] = raw.base
        return raw.ctypes.data, raw

    def free_host(self, pointer: int) -> None:
        self._call("host free", self._allocations.pop(pointer).free)

    def copy_to_device(self, pointer: int, host: np.ndarray) -> None:
        self._call("memcpy_htod_async", self._cuda.memcpy_htod_async, pointer, host, self._stream)

    def copy_to_host(self, host: np.ndarray, pointer: int) -> None:
        self._call("memcpy_dtoh_async", self._cuda.memcpy_dtoh_async, host, pointer, self._stream)

    def synchronize(self) -> None:
        self._call("stream synchronize", self._stream.synchronize)

    def destroy_stream(self) -> None:
        # pycuda has no explicit destroy: dropping the last reference (with the context current) does it.
        self._stream = None


def _open_api(device: int) -> Any:
    cudart = _import_cudart()
    driver_major: Optional[int] = None
    if cudart is not None:
        err, version = cudart.cudaDriverGetVersion()
        if err == cudart.cudaError_t.cudaSuccess and version > 0:
            driver_major = int(version) // 1000
    try:
        import pycuda.driver as pycuda_driver
    except ImportError:
        pycuda_driver = None
    bindings_major = _distribution_major("cuda-bindings", "cuda-python") if cudart is not None else None
    binding = choose_binding(bindings_major, driver_major, pycuda_driver is not None)
    if binding == CUDA_PYTHON:
        return _CudaPythonApi(cudart, device)
    try:
        pycuda_driver.init()
    except pycuda_driver.Error as err:
        raise BackendUnavailableError(
            "CUDA: expected a working CUDA driver, found pycuda's init failing: %s" % err
        ) from err
    if device >= pycuda_driver.Device.count():
        raise ModelError("CUDA: expected GPU index < %d, found %d" % (pycuda_driver.Device.count(), device))
    return _PyCudaApi(pycuda_driver, device)


class CudaDevice:
    """A CUDA stream on one GPU with the device and pinned host buffers allocated on it.

    Args:
        device: CUDA device index.

    Raises:
        BackendUnavailableError: no usable CUDA binding or driver (see :func:`choose_binding`).
        ModelError: a CUDA call fails (bad device index, out of memory).

    Attributes:
        device: the device index.
        binding: :data:`CUDA_PYTHON` or :data:`PYCUDA`.
        stream_handle: the ``cudaStream_t`` address to hand to TensorRT.
    """

    def __init__(self, device: int = 0) -> None:
        self.device = device
        self._api = _open_api(device)
        self.binding: str = self._api.name
        self.stream_handle: int = self._api.stream_handle
        self._device_buffers: List[int] = []
        self._host_buffers: List[int] = []
        self._closed = False

    @contextlib.contextmanager
    def activate(self) -> Iterator["CudaDevice"]:
        """Make this device current in the calling thread for the ``with`` block."""
        if self._closed:
            raise ModelError("CUDA: GPU %d's buffers were already released (close() was called)" % self.device)
        self._api.activate()
        try:
            yield self
        finally:
            self._api.deactivate()

    def properties(self) -> Tuple[str, Tuple[int, int]]:
        """``(GPU name, (compute capability major, minor))``, e.g. ``("NVIDIA H200", (9, 0))``."""
        with self.activate():
            return self._api.properties()

    def malloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` (at least 1) of device memory; call inside :meth:`activate`. Returns the pointer."""
        pointer = self._api.malloc(max(int(nbytes), 1))
        self._device_buffers.append(pointer)
        return pointer

    def free(self, pointer: int) -> None:
        """Free a pointer from :meth:`malloc`; call inside :meth:`activate`."""
        self._device_buffers.remove(pointer)
        self._api.free(pointer)

    def pinned(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host array (so copies are asynchronous); call inside :meth:`activate`.

        It stays valid until :meth:`free_pinned` or :meth:`close`.
        """
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        pointer, raw = self._api.malloc_host(nbytes)
        self._host_buffers.append(pointer)
        count = int(np.prod(shape, dtype=np.int64))
        return raw[: count * dtype.itemsize].view(dtype).reshape(shape)

    def free_pinned(self, array: np.ndarray) -> None:
        """Free an array from :meth:`pinned`; call inside :meth:`activate`."""
        pointer = array.ctypes.data
        self._host_buffers.remove(pointer)
        self._api.free_host(pointer)

    def copy_to_device(self, pointer: int, host: np.ndarray) -> None:
        """Queue a host-to-device copy of a C-contiguous array on the stream."""
        self._api.copy_to_device(pointer, host)

    def copy_to_host(self, host: np.ndarray, pointer: int) -> None:
        """Queue a device-to-host copy into a C-contiguous array; valid after :meth:`synchronize`."""
        self._api.copy_to_host(host, pointer)

    def synchronize(self) -> None:
        """Wait until everything queued on the stream has run."""
        self._api.synchronize()

    def close(self) -> None:
        """Free every buffer, destroy the stream; later calls raise :class:`ModelError`. Idempotent."""
        if self._closed:
            return
        with self.activate():
            for pointer in list(self._device_buffers):
                self.free(pointer)
            for pointer in list(self._host_buffers):
                self._host_buffers.remove(pointer)
                self._api.free_host(pointer)
            self._api.destroy_stream()
        self._closed = True

    def __repr__(self) -> str:
        return "CudaDevice(%d, binding=%s)" % (self.device, self.binding)
