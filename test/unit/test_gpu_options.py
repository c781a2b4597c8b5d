"""GPU options that are checked without a GPU: ONNX Runtime provider options, TensorFlow devices,
the bootstrap's DL_VISION_GPU detection and the recorded JetPack wheel check."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from dl_vision.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# --- ONNX Runtime ------------------------------------------------------------------------------


def test_provider_settings_carry_device_fp16_and_engine_cache():
    from dl_vision.backends.onnxruntime import provider_settings

    settings = provider_settings(
        [TRT, CUDA, CPU],
        device_id=1,
        fp16=True,
        engine_cache="/cache/engines/onnxruntime",
        extra={"cuda": {"gpu_mem_limit": 2 << 30, "cudnn_conv_algo_search": "HEURISTIC"}, "cpu": {}},
    )
    assert settings == [
        (
            TRT,
            {
                "device_id": "1",
                "trt_fp16_enable": "True",
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": "/cache/engines/onnxruntime",
            },
        ),
        (CUDA, {"device_id": "1", "gpu_mem_limit": "2147483648", "cudnn_conv_algo_search": "HEURISTIC"}),
        (CPU, {}),
    ]
    assert provider_settings([CPU]) == [(CPU, {})]
    with pytest.raises(ConfigError, match="expected provider names"):
        provider_settings([CPU], extra={"gpu": {}})
    with pytest.raises(ConfigError, match=r"provider_options.cuda: expected \{option: value\}"):
        provider_settings([CUDA, CPU], extra={"cuda": "fast"})


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "identity.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_backend_reports_its_provider_and_takes_gpu_options(tiny_onnx, tmp_path):
    from dl_vision.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(
        tiny_onnx,
        providers=["tensorrt", "cuda", "cpu"],
        device_id=0,
        fp16=True,
        engine_cache=str(tmp_path / "trt"),
        provider_options={"cuda": {"arena_extend_strategy": "kSameAsRequested"}},
    )
    import onnxruntime

    gpu_providers = {TRT, CUDA} & set(onnxruntime.get_available_providers())
    if not gpu_providers:  # the CPU build: the session runs on the CPU and says so
        assert backend.provider == backend.providers[0] == CPU
    else:  # onnxruntime-gpu: the first requested GPU provider that loads is the one in use
        assert backend.provider == backend.providers[0], backend.providers
        assert backend.provider in gpu_providers, "expected one of %s in use, found %s (session providers %s)" % (
            sorted(gpu_providers),
            backend.provider,
            backend.providers,
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"device_id": -1}, "runtime.device_id: expected a GPU index"),
        ({"fp16": "yes"}, "runtime.fp16: expected true or false"),
        ({"engine_cache": 3}, "runtime.engine_cache: expected true, false or a directory"),
        ({"provider_options": ["cuda"]}, "runtime.provider_options: expected"),
    ],
)
def test_onnx_gpu_option_errors(tiny_onnx, kwargs, message):
    from dl_vision.backends.onnxruntime import OnnxRuntimeBackend

    with pytest.raises(ConfigError, match=message):
        OnnxRuntimeBackend(tiny_onnx, **kwargs)


# --- TensorFlow -----------------------------------------------------------------------------------


def test_tensorflow_devices():
    import tensorflow as tf

    from dl_vision.backends.tensorflow import tensorflow_device

    gpus = len(tf.config.list_physical_devices("GPU"))
    assert tensorflow_device(tf, None) == ("/GPU:0" if gpus else "/CPU:0")
    assert tensorflow_device(tf, "cpu") == tensorflow_device(tf, "/device:CPU:0") == "/CPU:0"
    with pytest.raises(ConfigError, match="TensorFlow sees %d GPUs" % gpus):
        tensorflow_device(tf, "GPU:%d" % gpus)
    with pytest.raises(ConfigError, match="expected CPU or GPU:N, found 'TPU:0'"):
        tensorflow_device(tf, "TPU:0")


# --- bootstrap: DL_VISION_GPU ---------------------------------------------------------------------


TEGRA_RELEASE = "/etc/nv_tegra_release"


def _detect(tmp_path, gpu, smi_output=None, extra="", jetson=False):
    """Run setup.sh's detect_gpu with a fake nvidia-smi (or none) first on PATH.

    detect_gpu tells a Jetson by /etc/nv_tegra_release; its copy here reads a file under tmp_path
    instead (present when ``jetson``), so that the result does not depend on this machine.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if smi_output is not None:
        smi.write_text("#!/bin/sh\ncat <<'EOF'\n%s\nEOF\n" % smi_output)
        smi.chmod(0o755)
    elif smi.exists():
        smi.unlink()
    tegra = tmp_path / "nv_tegra_release"
    if jetson:
        tegra.write_text("# R35 (release), REVISION: 4.1\n")
    elif tegra.exists():
        tegra.unlink()
    script = (
        'source "%s"\n'
        "body=$(declare -f detect_gpu) || exit 3\n"
        'case "$body" in *"$TEST_TEGRA_FROM"*) ;; *) echo "expected detect_gpu to test $TEST_TEGRA_FROM, '
        'found it does not: update _detect in test/unit/test_gpu_options.py" >&2; exit 3 ;; esac\n'
        'eval "${body//"$TEST_TEGRA_FROM"/"$TEST_TEGRA_TO"}"\n'
        'detect_gpu; echo "MODE=$GPU_MODE MAJOR=$CUDA_MAJOR"; %s'
    ) % (REPO / "bootstrap" / "setup.sh", extra)
    env = dict(
        os.environ,
        DL_VISION_GPU=gpu,
        PATH="%s:/usr/bin:/bin" % bin_dir,
        TEST_TEGRA_FROM=TEGRA_RELEASE,
        TEST_TEGRA_TO=str(tegra),
    )
    return subprocess.run(
        ["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env
    )


SMI_HEADER = "| NVIDIA-SMI 580.159.03   Driver Version: 580.159.03   CUDA Version: %s     |"


@pytest.mark.parametrize(
    "gpu, smi, jetson, expected",
    [
        ("auto", SMI_HEADER % "13.0", False, "MODE=cuda MAJOR=13\n"),
        ("cuda", SMI_HEADER % "12.4", False, "MODE=cuda MAJOR=12\n"),
        ("auto", None, False, "MODE=none MAJOR=\n"),
        ("none", SMI_HEADER % "12.4", False, "MODE=none MAJOR=\n"),
        ("auto", None, True, "MODE=jetson MAJOR=\n"),
        ("cuda", SMI_HEADER % "12.4", True, "MODE=jetson MAJOR=\n"),  # JetPack's CUDA, not the x86 wheels
        ("none", None, True, "MODE=none MAJOR=\n"),
    ],
)
def test_detect_gpu(tmp_path, gpu, smi, jetson, expected):
    result = _detect(tmp_path, gpu, smi, jetson=jetson)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_detect_gpu_refuses_what_it_cannot_do(tmp_path):
    result = _detect(tmp_path, "cuda", None)
    assert result.returncode == 1 and "DL_VISION_GPU=cuda but no NVIDIA driver answers" in result.stderr
    result = _detect(tmp_path, "yes", None)
    assert result.returncode == 1 and "DL_VISION_GPU must be auto, cuda or none, found 'yes'" in result.stderr
    old_driver = _detect(tmp_path, "auto", SMI_HEADER % "11.4", extra="ENV_DIR=%s; install_gpu_requirements" % tmp_path)
    assert old_driver.returncode == 1
    assert "supports CUDA 11: expected CUDA 12 or 13" in old_driver.stderr


@pytest.mark.parametrize("major", ["12", "13"])
def test_gpu_requirements_exist_for_each_supported_cuda_major(major):
    text = (REPO / "bootstrap" / ("requirements-gpu-cuda%s.txt" % major)).read_text()
    assert "onnxruntime-gpu==" in text and ("tensorrt-cu%s==" % major) in text and "cuda-python==" in text


# --- the JetPack 5 wheel check (bootstrap/check_wheels.py; the index is asked only by hand/CI) ----


def _check_wheels():
    spec = importlib.util.spec_from_file_location("check_wheels", str(REPO / "bootstrap" / "check_wheels.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markers_are_evaluated_for_the_jetson_not_this_machine():
    check_wheels = _check_wheels()
    text = (
        'tensorflow-cpu==2.13.1; python_version < "3.9" and platform_machine == "x86_64"\n'
        'tensorflow==2.13.1; python_version < "3.9" and platform_machine == "aarch64"\n'
        'onnxruntime==1.19.2; python_version >= "3.10"\n'
        "# a comment\n-c constraints.txt\nrosbags==0.9.23\n"
    )
    names = [str(r) for r in check_wheels.target_requirements(text, check_wheels.JETSON["markers"])]
    assert names == ["tensorflow==2.13.1", "rosbags==0.9.23"]
    requires = [
        'tensorflow-cpu-aws==2.13.1; platform_system == "Linux" and platform_machine == "aarch64"',
        'tensorflow-intel==2.13.1; platform_system == "Windows"',
        "numpy<=1.24.3,>=1.22",
        'pytest; extra == "test"',
    ]
    pinned = check_wheels.pinned_dependencies(requires, check_wheels.JETSON["markers"])
    assert [str(r) for r in pinned] == ["tensorflow-cpu-aws==2.13.1"]


def test_the_recorded_jetson_wheel_check_matches_the_requirements():
    """Fails when requirements.txt changed after the last `bash bootstrap/setup.sh check-wheels --record`."""
    check_wheels = _check_wheels()
    record = json.loads(check_wheels.RECORD.read_text())
    requirements = REPO / "bootstrap" / record["requirements"]
    assert record["requirements_sha256"] == hashlib.sha256(requirements.read_bytes()).hexdigest(), (
        "bootstrap/requirements.txt changed since the JetPack wheel check: run "
        "`bash bootstrap/setup.sh check-wheels --record` (needs the package index) and commit its answer"
    )
    wanted = {
        r.name.lower()
        for r in check_wheels.target_requirements(requirements.read_text(), check_wheels.JETSON["markers"])
    }
    found = {w["requirement"].split("=")[0].split("<")[0].split(">")[0].lower() for w in record["wheels"]}
    assert wanted <= found
    assert all("aarch64" in w["wheel"] or w["wheel"].endswith("-none-any.whl") for w in record["wheels"])
