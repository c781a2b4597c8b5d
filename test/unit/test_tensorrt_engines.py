"""The parts of the TensorRT route that run without TensorRT: version branches, batch profiles,
calibration batching through the spec's pre-processor, the engine cache, the CUDA binding choice,
and the one-line failures of build_engine and gpu-check where TensorRT is missing."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dl_vision.assets import sha256_of
from dl_vision.backends.base import TensorInfo
from dl_vision.backends.cuda_memory import CUDA_PYTHON, PYCUDA, choose_binding
from dl_vision.engines.build import BatchProfile, NetworkInput, profile_shapes
from dl_vision.engines.cache import EngineKey, cached_engine, engine_key
from dl_vision.engines.calibration import calibration_batches, preprocessed_frames
from dl_vision.engines.trt_api import TrtFeatures, numpy_dtype, parse_version
from dl_vision.errors import BackendUnavailableError, ConfigError, ModelError
from dl_vision.preprocess import Preprocessor
from dl_vision.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None

# --- version branches ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version, explicit_batch, fp16, int8, deprecated",
    [
        ("8.5.2.2", True, True, True, False),  # JetPack 5
        ("8.6.1.6", True, True, True, False),
        ("10.0.1", False, True, True, False),
        ("10.13.3.9", False, True, True, True),
        ("11.4.0.106", False, False, False, False),  # what `pip install tensorrt` brings now
    ],
)
def test_features_by_version(version, explicit_batch, fp16, int8, deprecated):
    features = TrtFeatures.of(version)
    assert features.explicit_batch_flag is explicit_batch
    assert features.calibration_deprecated is deprecated
    assert features.precision_problem("fp32") is None
    assert (features.precision_problem("fp16") is None) is fp16
    assert (features.precision_problem("int8") is None) is int8


@pytest.mark.parametrize("precision, alternative", [("fp16", "modelopt.onnx.autocast"), ("int8", "Q/DQ nodes")])
def test_a_precision_11x_lacks_is_one_line_naming_the_alternative(precision, alternative):
    problem = TrtFeatures.of("11.4.0").precision_problem(precision)
    assert "\n" not in problem
    assert problem.startswith("precision %s: TensorRT 11.4.0" % precision)
    assert alternative in problem and "TensorRT 8.5-10.x" in problem


def test_network_flags_explicit_batch_only_before_10():
    trt8 = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0))
    assert TrtFeatures.of("8.5.2").network_flags(trt8) == 1
    trt11 = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace())  # EXPLICIT_BATCH removed in 11
    assert TrtFeatures.of("11.4.0").network_flags(trt11) == 0
    assert TrtFeatures.of("10.13.0").network_flags(trt11) == 0


@pytest.mark.parametrize(
    "text, expected", [("10.13.0.35", (10, 13, 0)), ("8.5", (8, 5, 0)), ("11.4.0.106", (11, 4, 0))]
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_parse_version_rejects_junk():
    with pytest.raises(ConfigError, match="expected MAJOR.MINOR"):
        parse_version("latest")
    with pytest.raises(ConfigError, match="expected one of fp32|fp16|int8"):
        TrtFeatures.of("10.0").precision_problem("fp8")


def _fake_trt_types():
    mapping = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8}

    def nptype(dtype):
        if dtype.name not in mapping:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return mapping[dtype.name]

    return SimpleNamespace(nptype=nptype)


@pytest.mark.parametrize("name", ["BF16", "FP8"])
def test_bf16_and_fp8_io_is_a_model_error_naming_the_fix(name):
    with pytest.raises(ModelError, match="found %s: rebuild the engine with FP32 or FP16" % name):
        numpy_dtype(_fake_trt_types(), SimpleNamespace(name=name), "images")


def test_numpy_dtype_of_ordinary_types():
    assert numpy_dtype(_fake_trt_types(), SimpleNamespace(name="HALF"), "x") == np.float16


# --- batch profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected, error",
    [
        ("1:4:8", BatchProfile(1, 4, 8), None),
        ("4", BatchProfile(4, 4, 4), None),
        ("4:2:8", None, "1 <= MIN <= OPT <= MAX"),
        ("0:1:2", None, "1 <= MIN"),
        ("a:b:c", None, "MIN:OPT:MAX"),
        ("1:2", None, "MIN:OPT:MAX"),
    ],
)
def test_batch_profile_parse(text, expected, error):
    if error:
        with pytest.raises(ConfigError, match=error):
            BatchProfile.parse(text)
    else:
        assert BatchProfile.parse(text) == expected
        assert str(expected) == "%d:%d:%d" % expected


def test_profile_shapes():
    assert profile_shapes("images", (-1, 3, 64, 64), BatchProfile(1, 4, 8)) == (
        (1, 3, 64, 64),
        (4, 3, 64, 64),
        (8, 3, 64, 64),
    )
    assert profile_shapes("images", (-1, 3, 64, 64), None)[2] == (1, 3, 64, 64)
    assert profile_shapes("input", (1, 128, 128, 3), None) is None
    with pytest.raises(ModelError, match="dynamic dimension besides the batch"):
        profile_shapes("images", (-1, 3, -1, -1), None)
    with pytest.raises(ModelError, match="fixed batch, found --batch 1:4:8"):
        profile_shapes("input", (1, 128, 128, 3), BatchProfile(1, 4, 8))


# --- calibration -------------------------------------------------------------------------------


def test_calibration_batches_group_in_order_and_drop_the_rest(caplog):
    tensors = [np.full((1, 2, 2, 3), i, np.float32) for i in range(5)]
    with caplog.at_level(logging.INFO, logger="dl_vision"):
        batches = list(calibration_batches(tensors, 2))
    assert [b.shape for b in batches] == [(2, 2, 2, 3), (2, 2, 2, 3)]
    assert [float(b[k, 0, 0, 0]) for b in batches for k in range(2)] == [0, 1, 2, 3]
    assert all(b.flags["C_CONTIGUOUS"] for b in batches)
    assert "dropped the last 1 frames" in caplog.text
    with pytest.raises(ModelError, match="expected every frame as"):
        list(calibration_batches([np.zeros((1, 2)), np.zeros((1, 3))], 2))
    with pytest.raises(ConfigError, match="expected a size >= 1"):
        list(calibration_batches(tensors, 0))


def test_calibration_frames_are_what_the_model_sees():
    """The same letterbox, RGB order and [-1, 1] scaling as the detector's own pre-processing."""
    import cv2

    from dl_vision import assets

    spec = load_spec("face_short_range")
    image = cv2.imread(str(assets.fetch("astronaut")), cv2.IMREAD_COLOR)
    network_input = NetworkInput("input", (1, 128, 128, 3), np.dtype(np.float32))
    (tensor,) = list(preprocessed_frames([image], spec.input, network_input))
    expected, _ = Preprocessor(spec.input, TensorInfo("input", (1, 128, 128, 3), np.float32))(image)
    np.testing.assert_array_equal(tensor, expected)
    assert tensor.shape == (1, 128, 128, 3) and -1.0 <= tensor.min() and tensor.max() <= 1.0


# --- engine cache --------------------------------------------------------------------------------


def _key(**changes):
    fields = dict(
        onnx_sha256="ab" * 32,
        tensorrt="8.5.2.2",
        gpu="Orin",
        compute_capability="8.7",
        precision="fp16",
        batch="",
    )
    fields.update(changes)
    return EngineKey(**fields)


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"tensorrt": "10.13.3.9"},
        {"gpu": "NVIDIA H200"},
        {"compute_capability": "9.0"},
        {"precision": "int8"},
        {"batch": "1:4:8"},
    ],
)
def test_every_key_field_makes_another_engine_file(change):
    assert _key().filename("face") != _key(**change).filename("face")
    assert _key().filename("face") == _key().filename("face")
    assert _key().filename("face").startswith("face.fp16.")


def test_engine_key_from_the_onnx_file(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model bytes")
    key = engine_key(onnx, "fp32", BatchProfile(1, 2, 4), "10.13.3.9", "NVIDIA H200", (9, 0))
    assert key.onnx_sha256 == sha256_of(onnx) == __import__("hashlib").sha256(b"model bytes").hexdigest()
    assert (key.compute_capability, key.batch) == ("9.0", "1:2:4")


def test_cached_engine_builds_once_then_reuses(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    calls = []

    def build():
        calls.append(1)
        time.sleep(0.2)  # long enough for the second thread to wait on the lock
        return b"engine bytes"

    paths = []
    threads = [
        threading.Thread(target=lambda: paths.append(cached_engine(_key(), onnx, build, tmp_path / "engines")))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and paths[0] == paths[1]
    assert paths[0].read_bytes() == b"engine bytes"
    record = json.loads(paths[0].with_suffix(".json").read_text())
    assert record["gpu"] == "Orin" and record["onnx"] == str(onnx)
    assert cached_engine(_key(), onnx, build, tmp_path / "engines") == paths[0] and len(calls) == 1


def test_int8_is_never_built_on_first_use(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ConfigError, match="no cached int8 engine .* build_engine SPEC --precision int8 --calibration"):
        cached_engine(_key(precision="int8"), onnx, None, tmp_path)


# --- CUDA binding choice -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bindings, driver, pycuda, expected",
    [
        (12, 12, False, CUDA_PYTHON),
        (12, 13, False, CUDA_PYTHON),  # an older major runs on a newer driver
        (13, 12, True, PYCUDA),  # cuda-python 13 on a CUDA 12 driver: cudaSetDevice would fail
        (12, 11, True, PYCUDA),  # JetPack 5 (CUDA 11.4) with a stray cuda-python 12
        (None, 11, True, PYCUDA),
        (13, 12, False, "needs a CUDA 13 driver, the driver supports CUDA 12"),
        (None, None, False, "neither cuda-python nor pycuda is installed"),
        (12, None, False, "no CUDA driver answers"),
    ],
)
def test_choose_binding(bindings, driver, pycuda, expected):
    if expected in (CUDA_PYTHON, PYCUDA):
        assert choose_binding(bindings, driver, pycuda) == expected
    else:
        with pytest.raises(BackendUnavailableError, match=expected):
            choose_binding(bindings, driver, pycuda)


#: What cuda_memory imports for cuda-python (cuda.bindings.runtime, cuda.cudart before 12.6) and pycuda.
CUDA_BINDING_MODULES = ["cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"]


def test_cuda_device_without_bindings_is_one_clear_error(monkeypatch):
    from dl_vision.backends import cuda_memory

    for name in CUDA_BINDING_MODULES:  # None in sys.modules: importing it raises ImportError, as when missing
        monkeypatch.setitem(sys.modules, name, None)
    assert cuda_memory._import_cudart() is None
    with pytest.raises(BackendUnavailableError) as caught:
        cuda_memory.CudaDevice(0)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith("CUDA from Python: expected cuda-python"), message
    assert message.endswith("found neither cuda-python nor pycuda is installed"), message


# --- the backend's options and the ONNX -> TensorRT route --------------------------------------


def test_tensorrt_backend_option_errors(tmp_path):
    from dl_vision.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(ConfigError, match="an engine file has its precision and batch range built in"):
        TensorRTBackend(engine, precision="fp16")
    with pytest.raises(ConfigError, match="runtime.precision: expected one of fp32|fp16|int8"):
        TensorRTBackend(tmp_path / "m.onnx", precision="half")
    with pytest.raises(ConfigError, match="runtime.io_scales"):
        TensorRTBackend(engine, io_scales={"x": -1})
    with pytest.raises(ConfigError, match="runtime.device"):
        TensorRTBackend(engine, device=-1)


def test_runtime_engine_picks_the_backend(tmp_path):
    from dl_vision.backends import create_backend

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\0")
    with pytest.raises(
        ConfigError, match="runtime.engine: expected onnxruntime or tensorrt for format onnx, found 'gpu'"
    ):
        create_backend("onnx", onnx, engine="gpu")
    with pytest.raises(ConfigError, match="expected nothing .* for format tflite"):
        create_backend("tflite", onnx, engine="tensorrt")
    if not HAS_TENSORRT:
        with pytest.raises(BackendUnavailableError, match="runtime.engine tensorrt needs TensorRT's Python API"):
            create_backend("onnx", onnx, engine="tensorrt", precision="fp16")


# --- build_engine and gpu-check without TensorRT ----------------------------------------------


def _onnx_spec(tmp_path):
    """A spec for a tiny (1, 3, 8, 8) -> (1, 6, 32) ONNX model with a YOLOv8 head."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "shape"], ["output0"])],
        "head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 32])],
        [helper.make_tensor("shape", TensorProto.INT64, [3], [0, 6, 32])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "head.onnx"))
    spec = tmp_path / "head.yaml"
    spec.write_text(
        "name: head\ntask: detection\nfile: head.onnx\nformat: onnx\n"
        "input: {size: [8, 8], layout: nchw, normalization: unit}\ndecoder: {type: yolo}\nlabels: [a, b]\n"
    )
    return spec


def _build_engine(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_engine")] + [str(a) for a in args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=120,
    )


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_fails_in_one_line(tmp_path):
    spec = _onnx_spec(tmp_path)
    for args in ([spec, "--precision", "fp16"], [tmp_path / "head.onnx", "--precision", "fp32", "--batch", "1:2:4"]):
        result = _build_engine(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("error: build_engine needs TensorRT's Python API")
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["{spec}", "--precision", "int8"], "--precision int8 needs --calibration"),
        (["{onnx}", "--precision", "fp16", "--check", "frames"], "need a model spec"),
        (["face", "--precision", "fp16"], "build_engine needs an onnx model, found tflite"),
        (["{spec}", "--precision", "fp16", "--batch", "8:1:1"], "1 <= MIN <= OPT <= MAX"),
        (["{missing}", "--precision", "fp16"], "does not exist"),
    ],
)
def test_build_engine_user_errors(tmp_path, capsys, args, message):
    from dl_vision.engines.cli import main

    spec = _onnx_spec(tmp_path)
    values = {"spec": spec, "onnx": tmp_path / "head.onnx", "missing": tmp_path / "none.onnx"}
    assert main([a.format(**values) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_gpu_check_without_tensorrt_ends_in_fail():
    result = subprocess.run(
        [sys.executable, "-m", "dl_vision.engines.gpu_check", "--runs", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "FAIL  TensorRT" in result.stdout and "needs TensorRT's Python API" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("gpu-check: FAIL")
    assert "Traceback" not in result.stderr
