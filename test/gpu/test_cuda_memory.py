"""CudaDevice on a real GPU: copies, pinned buffers, per-thread device, freeing, closing.

Needs an NVIDIA GPU and cuda-python (or pycuda); skipped otherwise (the allow-listed "no GPU"
reason). No TensorRT needed. On a GPU machine, alone:

    python3 -m pip install 'cuda-python==12.*'      # or 13.* for a CUDA 13 driver (nvidia-smi says)
    PYTHONPATH=src python3 -m pytest -q test/gpu/test_cuda_memory.py

``bash bootstrap/setup.sh gpu-check`` runs it first.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dl_vision.errors import BackendUnavailableError, ModelError


def _device_or_skip():
    from dl_vision.backends.cuda_memory import CudaDevice

    try:
        return CudaDevice(0)
    except BackendUnavailableError as err:
        pytest.skip("no GPU: %s" % err)


@pytest.fixture
def cuda():
    device = _device_or_skip()
    yield device
    device.close()


def _free_bytes(cuda) -> int:
    """Free device memory, through whichever binding the device uses."""
    if cuda.binding == "cuda-python":
        from dl_vision.backends.cuda_memory import _import_cudart

        cudart = _import_cudart()
        err, free, _ = cudart.cudaMemGetInfo()
        assert err == cudart.cudaError_t.cudaSuccess
        return int(free)
    import pycuda.driver as driver

    return int(driver.mem_get_info()[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.int32])
def test_round_trip_through_the_gpu_is_exact(cuda, dtype):
    data = (np.arange(3 * 257 * 129) % 251).astype(dtype).reshape(3, 257, 129)
    with cuda.activate():
        host_in = cuda.pinned(data.shape, data.dtype)
        host_out = cuda.pinned(data.shape, data.dtype)
        np.copyto(host_in, data)
        pointer = cuda.malloc(data.nbytes)
        cuda.copy_to_device(pointer, host_in)
        cuda.copy_to_host(host_out, pointer)
        cuda.synchronize()
    np.testing.assert_array_equal(host_out, data)
    assert cuda.stream_handle != 0


def test_pinned_buffers_are_page_locked_arrays_of_the_asked_shape(cuda):
    with cuda.activate():
        array = cuda.pinned((4, 5), np.float32)
    assert array.shape == (4, 5) and array.dtype == np.float32 and array.flags["C_CONTIGUOUS"]


def test_a_worker_thread_uses_the_device_after_activate(cuda):
    """ROS runs inference on a worker thread, not the one that made the device."""
    data = np.linspace(0, 1, 1000, dtype=np.float32)
    out = {}

    def worker():
        with cuda.activate():
            host = cuda.pinned(data.shape, data.dtype)
            np.copyto(host, data)
            pointer = cuda.malloc(data.nbytes)
            cuda.copy_to_device(pointer, host)
            host[:] = 0
            cuda.copy_to_host(host, pointer)
            cuda.synchronize()
            out["data"] = host.copy()
            cuda.free(pointer)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(60)
    np.testing.assert_array_equal(out["data"], data)


def test_close_gives_the_memory_back_and_refuses_later_use():
    cuda = _device_or_skip()
    with cuda.activate():
        before = _free_bytes(cuda)
        cuda.malloc(512 << 20)
        during = _free_bytes(cuda)
    assert before - during >= 500 << 20
    cuda.close()
    probe = _device_or_skip()
    with probe.activate():
        after = _free_bytes(probe)
    probe.close()
    assert after >= before - (64 << 20)  # other processes may allocate meanwhile; 512 MiB must be back
    with pytest.raises(ModelError, match="close"):
        with cuda.activate():
            pass
    cuda.close()  # idempotent


def test_properties_name_the_gpu(cuda):
    name, (major, minor) = cuda.properties()
    assert name and major >= 5 and minor >= 0
