"""What the installed TensorRT offers, by version: the one place that branches on it.

- 8.5, 8.6 (JetPack 5): ``create_network(1 << EXPLICIT_BATCH)``; ``BuilderFlag.FP16`` / ``INT8``;
  INT8 calibration through ``IInt8EntropyCalibrator2`` and ``config.int8_calibrator``.
- 9.x, 10.x: networks are always explicit batch (``create_network(0)``; the flag is ignored and
  deprecated); FP16/INT8 flags as before; calibration deprecated from 10.1 but working.
- 11.x: ``EXPLICIT_BATCH``, the FP16/INT8 builder flags and the calibrators are removed: networks
  are strongly typed, so the ONNX itself carries FP16 types or Q/DQ nodes.

Every version from 8.5 has the name-based tensor API (``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), ``build_serialized_network``
and ``set_memory_pool_limit``; the binding-index API (``get_binding_*``, ``execute_v2``) is gone
from 10.0 and is not used here.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from dl_vision.errors import BackendUnavailableError, ConfigError, ModelError

PRECISIONS = ("fp32", "fp16", "int8")

INSTALL_HINT = (
    "TensorRT's Python API (JetPack: `sudo apt install python3-libnvinfer`, seen by the env through its "
    "system site-packages; x86: `DL_VISION_GPU=cuda bash bootstrap/setup.sh`, or `pip install tensorrt`)"
)

#: numpy has no type for these TensorRT I/O types.
_NO_NUMPY_TYPE = ("BF16", "FP8", "FP4", "INT4", "E8M0")


def import_tensorrt(purpose: str) -> Any:
    """The ``tensorrt`` module.

    Args:
        purpose: what needs it, for the message (``"build_engine"``, ``"format tensorrt"``).

    Raises:
        BackendUnavailableError: TensorRT is not installed or older than 8.5.
    """
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailableError(
            "%s needs %s: found no tensorrt module (%s)" % (purpose, INSTALL_HINT, err)
        ) from err
    if parse_version(trt.__version__) < (8, 5):
        raise BackendUnavailableError(
            "%s: expected TensorRT 8.5 or newer (the name-based tensor API), found %s" % (purpose, trt.__version__)
        )
    return trt


def parse_version(text: str) -> Tuple[int, int, int]:
    """``"10.13.0.35"`` -> ``(10, 13, 0)``.

    Raises:
        ConfigError: not a dotted version.
    """
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not match:
        raise ConfigError("TensorRT version: expected MAJOR.MINOR[.PATCH], found %r" % (text,))
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


class TrtFeatures(NamedTuple):
    """The builder API of one TensorRT version (see the table in the module docstring).

    Attributes:
        version: (major, minor, patch).
        explicit_batch_flag: ``create_network`` needs ``1 << EXPLICIT_BATCH`` (before 10.0).
        weak_typing: ``BuilderFlag.FP16`` / ``INT8`` exist (before 11.0).
        int8_calibration: ``IInt8EntropyCalibrator2`` and ``config.int8_calibrator`` exist (before 11.0).
        calibration_deprecated: calibration works but is deprecated (10.1 to 10.x).
    """

    version: Tuple[int, int, int]
    explicit_batch_flag: bool
    weak_typing: bool
    int8_calibration: bool
    calibration_deprecated: bool

    @classmethod
    def of(cls, version: str) -> "TrtFeatures":
        """The features of TensorRT ``version`` (a ``tensorrt.__version__`` string)."""
        v = parse_version(version)
        return cls(
            version=v,
            explicit_batch_flag=v[0] < 10,
            weak_typing=v[0] < 11,
            int8_calibration=v[0] < 11,
            calibration_deprecated=(10, 1) <= v[:2] < (11, 0),
        )

    @property
    def version_text(self) -> str:
        return "%d.%d.%d" % self.version

    def precision_problem(self, precision: str) -> Optional[str]:
        """None when this version builds ``precision``, else one line naming the alternative.

        Raises:
            ConfigError: ``precision`` is not one of :data:`PRECISIONS`.
        """
        if precision not in PRECISIONS:
            raise ConfigError("precision: expected one of %s, found %r" % ("|".join(PRECISIONS), precision))
        if precision == "fp16" and not self.weak_typing:
            return (
                "precision fp16: TensorRT %s builds strongly typed networks only (BuilderFlag.FP16 was removed "
                "in 11.0): convert the ONNX to FP16 first (python3 -m modelopt.onnx.autocast --onnx_path M.onnx "
                "--output_path M_fp16.onnx) and build that with --precision fp32, or use TensorRT 8.5-10.x"
                % self.version_text
            )
        if precision == "int8" and not self.int8_calibration:
            return (
                "precision int8: TensorRT %s has no calibrators (implicit quantization was removed in 11.0): "
                "quantize the ONNX with Q/DQ nodes first (python3 -m modelopt.onnx.quantization --onnx_path M.onnx "
                "--quantize_mode int8) and build that with --precision fp32, or use TensorRT 8.5-10.x"
                % self.version_text
            )
        return None

    def network_flags(self, trt: Any) -> int:
        """The ``create_network`` argument: explicit batch before 10.0, nothing after."""
        if self.explicit_batch_flag:
            return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        return 0


def numpy_dtype(trt: Any, dtype: Any, tensor: str) -> np.dtype:
    """The numpy dtype of a TensorRT I/O tensor type.

    Raises:
        ModelError: a type numpy lacks (BF16, FP8, INT4, ...), naming the fix.
    """
    name = str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1].upper()
    if name in _NO_NUMPY_TYPE:
        raise ModelError(
            "TensorRT tensor %r: expected an I/O type numpy has (float32, float16, int8, int32, int64, bool, uint8), "
            "found %s: rebuild the engine with FP32 or FP16 inputs and outputs" % (tensor, name)
        )
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError as err:
        raise ModelError(
            "TensorRT tensor %r: expected an I/O type numpy has, found %s (%s)" % (tensor, name, err)
        ) from err
