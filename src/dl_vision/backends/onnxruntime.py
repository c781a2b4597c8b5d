"""ONNX Runtime backend (``format: onnx``) with an ordered execution-provider list and its options.

The spec's ``runtime.providers`` lists providers best first, e.g.
``[tensorrt, cuda, cpu]`` (short names) or ONNX Runtime's own names
(``TensorrtExecutionProvider``...). Providers this ONNX Runtime build lacks are
dropped with a logged reason, and a provider that fails to start (missing CUDA
libraries, say) makes ONNX Runtime fall back; the providers really in use are
logged and kept in :attr:`OnnxRuntimeBackend.providers`, the first of them in
:attr:`OnnxRuntimeBackend.provider` (what diagnostics report).

GPU options (``runtime:``): ``device_id`` (CUDA and TensorRT providers), ``fp16``
(TensorRT provider's ``trt_fp16_enable``), ``engine_cache`` (TensorRT provider: keep
its engines in ``$DL_VISION_CACHE/engines/onnxruntime``, or in the directory given,
instead of rebuilding them at every start; on by default, ``false`` turns it off) and
``provider_options: {cuda: {...}, tensorrt: {...}}`` for any other option of a
provider, e.g. ``{cuda: {gpu_mem_limit: 2147483648, cudnn_conv_algo_search: HEURISTIC}}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from dl_vision.backends.base import Backend, TensorInfo, check_feeds, check_threads
from dl_vision.errors import BackendUnavailableError, ConfigError, ModelError, one_line

LOGGER = logging.getLogger("dl_vision")

#: Short provider names a spec may use.
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

#: Used when the spec names none: the GPU when this build has one, else the CPU.
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")

#: ONNX tensor element types (as ONNX Runtime spells them) to numpy dtypes.
ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailableError(
            "format onnx needs ONNX Runtime: expected `pip install onnxruntime` (onnxruntime-gpu for CUDA/TensorRT), "
            "found it not installed (%s)" % err
        ) from err
    return onnxruntime


def _tensor_info(arg: Any) -> TensorInfo:
    # Symbolic dimensions ("batch", "N") come back as strings: they are dynamic.
    shape = tuple(d if isinstance(d, int) else None for d in (arg.shape or ()))
    dtype = ONNX_DTYPES.get(arg.type)
    if dtype is None:
        raise ModelError(
            "ONNX tensor %r: expected one of types %s, found %s" % (arg.name, sorted(ONNX_DTYPES), arg.type)
        )
    return TensorInfo(arg.name, shape, dtype)


def select_providers(requested: Optional[Sequence[str]], available: Sequence[str], known: Sequence[str]) -> List[str]:
    """The requested providers this build has, in order, with the CPU as the last resort.

    Args:
        requested: provider names (short or full), best first; None for the default.
        available: ``onnxruntime.get_available_providers()``.
        known: ``onnxruntime.get_all_providers()`` (to tell typos from missing builds).

    Returns:
        Full provider names to pass to the session.

    Raises:
        ConfigError: a name is not an ONNX Runtime provider at all.
    """
    names = list(DEFAULT_PROVIDERS if requested is None else requested)
    if isinstance(requested, str):
        names = [requested]
    chosen: List[str] = []
    for name in names:
        full = PROVIDER_ALIASES.get(str(name).lower(), str(name))
        if full not in known:
            raise ConfigError(
                "runtime.providers: expected ONNX Runtime providers (%s or full names), found %r"
                % (", ".join(PROVIDER_ALIASES), name)
            )
        if full not in available:
            if requested is not None:
                LOGGER.warning(
                    "onnxruntime: provider %s is not in this build (available: %s); skipping it",
                    full,
                    ", ".join(available),
                )
            continue
        if full not in chosen:
            chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _option_text(value: Any) -> str:
    """ONNX Runtime reads provider options as strings (``"True"``, ``"0"``)."""
    return str(bool(value)) if isinstance(value, bool) else str(value)


def provider_settings(
    chosen: Sequence[str],
    device_id: Optional[int] = None,
    fp16: Optional[bool] = None,
    engine_cache: Optional[str] = None,
    extra: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> List[Tuple[str, Dict[str, str]]]:
    """``(provider, options)`` pairs for ``InferenceSession(providers=...)``.

    Args:
        chosen: full provider names (see :func:`select_providers`).
        device_id: GPU of the CUDA and TensorRT providers (None: their default, 0).
        fp16: TensorRT provider's FP16 kernels (None: its default, off).
        engine_cache: directory of the TensorRT provider's engine cache (None: no cache).
        extra: ``{provider (short or full name): {option: value}}`` passed through.

    Raises:
        ConfigError: ``extra`` names a provider that is not ONNX Runtime's, or is not a mapping.
    """
    options: Dict[str, Dict[str, str]] = {name: {} for name in chosen}
    gpu = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    for name in chosen:
        if name in gpu and device_id is not None:
            options[name]["device_id"] = _option_text(device_id)
    trt = options.get("TensorrtExecutionProvider")
    if trt is not None:
        if fp16 is not None:
            trt["trt_fp16_enable"] = _option_text(fp16)
        if engine_cache:
            trt["trt_engine_cache_enable"] = "True"
            trt["trt_engine_cache_path"] = str(engine_cache)
    for key, values in (extra or {}).items():
        full = PROVIDER_ALIASES.get(str(key).lower(), str(key))
        if full not in PROVIDER_ALIASES.values() and not full.endswith("ExecutionProvider"):
            raise ConfigError(
                "runtime.provider_options: expected provider names (%s) as keys, found %r"
                % (", ".join(PROVIDER_ALIASES), key)
            )
        if not isinstance(values, Mapping):
            raise ConfigError("runtime.provider_options.%s: expected {option: value}, found %r" % (key, values))
        if full in options:
            options[full].update({str(k): _option_text(v) for k, v in values.items()})
    return [(name, options[name]) for name in chosen]


def default_engine_cache() -> str:
    """``$DL_VISION_CACHE/engines/onnxruntime``: the TensorRT provider's engines, beside build_engine's."""
    from dl_vision.assets import cache_dir

    return str(cache_dir() / "engines" / "onnxruntime")


class OnnxRuntimeBackend(Backend):
    """An ``.onnx`` model in an ONNX Runtime inference session.

    Args:
        path: the ``.onnx`` file.
        providers: execution providers best first (see module doc); None: CUDA if present, else CPU.
        threads: intra-op CPU threads (None: ONNX Runtime's default, one per core).
        device_id: GPU index of the CUDA and TensorRT providers.
        fp16: let the TensorRT provider use FP16 kernels.
        engine_cache: TensorRT provider's engine cache: True (the default) for
            ``$DL_VISION_CACHE/engines/onnxruntime``, a directory, or False for none.
        provider_options: ``{provider: {option: value}}`` passed to ONNX Runtime.

    Raises:
        BackendUnavailableError: ONNX Runtime is not installed.
        ConfigError: a bad provider name, thread count or provider option.
        ModelError: the file is missing or not a loadable ONNX model.
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: Union[str, Path],
        providers: Optional[Sequence[str]] = None,
        threads: Optional[int] = None,
        device_id: Optional[int] = None,
        fp16: Optional[bool] = None,
        engine_cache: Union[bool, str] = True,
        provider_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    ) -> None:
        path = Path(path)
        check_threads(threads)
        if device_id is not None and (isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0):
            raise ConfigError("runtime.device_id: expected a GPU index >= 0, found %r" % (device_id,))
        if fp16 is not None and not isinstance(fp16, bool):
            raise ConfigError("runtime.fp16: expected true or false, found %r" % (fp16,))
        if not isinstance(engine_cache, (bool, str)):
            raise ConfigError("runtime.engine_cache: expected true, false or a directory, found %r" % (engine_cache,))
        if provider_options is not None and not isinstance(provider_options, Mapping):
            raise ConfigError(
                "runtime.provider_options: expected {provider: {option: value}}, found %r" % (provider_options,)
            )
        if not path.is_file():
            raise ModelError("ONNX model file %s does not exist" % path)
        ort = _import_onnxruntime()
        chosen = select_providers(providers, ort.get_available_providers(), ort.get_all_providers())
        cache = default_engine_cache() if engine_cache is True else (engine_cache or None)
        if cache and "TensorrtExecutionProvider" in chosen:
            Path(cache).mkdir(parents=True, exist_ok=True)
        configured = provider_settings(chosen, device_id, fp16, cache, provider_options)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=configured)
        except Exception as err:  # noqa: BLE001 - ONNX Runtime's pybind errors share no base class but Exception
            raise ModelError("%s is not a loadable ONNX model: %s" % (path, one_line(err))) from err
        self.path = path
        self.providers: List[str] = list(self._session.get_providers())
        fallen = [p for p in chosen if p not in self.providers]
        if fallen:
            LOGGER.warning(
                "onnxruntime: providers %s failed to start (see ONNX Runtime's log above); running on %s",
                ", ".join(fallen),
                ", ".join(self.providers),
            )
        LOGGER.info("onnxruntime: %s on %s", path.name, ", ".join(self.providers))
        self.inputs: List[TensorInfo] = [_tensor_info(arg) for arg in self._session.get_inputs()]
        self.outputs: List[TensorInfo] = [_tensor_info(arg) for arg in self._session.get_outputs()]

    @property
    def provider(self) -> str:
        """The provider that runs the model's nodes first (the one asked for, or what ONNX Runtime fell back to)."""
        return self.providers[0]

    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run one batch (any batch size when the model's batch dimension is dynamic).

        Raises:
            ModelError: an input does not match the model, or inference fails.
        """
        feeds = check_feeds("ONNX", self.inputs, inputs)
        try:
            values = self._session.run(None, feeds)
        except Exception as err:  # noqa: BLE001 - see __init__
            raise ModelError("ONNX inference failed: %s" % one_line(err)) from err
        return {info.name: value for info, value in zip(self.outputs, values)}

    def close(self) -> None:
        self._session = None
