"""Environment doctor: do ROS, the deep-learning env and the default models fit together?

ROS nodes run on ROS's interpreter, while TensorFlow and friends live in a
dedicated env (see ``bootstrap/``). The usual ways that breaks are quiet: a
``python3`` from pyenv or Anaconda first on PATH, a pip-installed numpy 2
shadowing the numpy that cv_bridge's compiled module was built for, a model
file that never got downloaded. The doctor looks at each of these and prints
one line per problem with its fix.

Every module is imported in a child process of the interpreter being checked,
so a module that crashes on import (a numpy ABI mismatch can abort the
process) becomes a reported problem instead of a dead doctor. This module
itself imports only the standard library and :mod:`dl_vision.assets`, so it
runs before anything is built: ``bash bootstrap/setup.sh doctor``.

``--model SPEC`` also loads a model spec and its model in a child process and runs it once on a
sample photo, so a spec or model file that stops a node at start is named with what is wrong.

Exit status: 0 when nothing is broken (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from typing import Any, Dict, List, Optional
from xmlrpc.client import ServerProxy

ERROR = "error"
WARNING = "warning"

# The ROS interpreter: where rospy and cv_bridge's compiled module were built
# (Debian bookworm and Ubuntu 20.04 both use the system python3).
DEFAULT_ROS_PYTHON = "/usr/bin/python3"

# Modules whose location and version are reported. "required" ones make the
# setup broken when they fail to import.
MODULES = [
    # (import name, required, what it is for)
    ("numpy", True, "arrays everywhere; must match ROS's compiled modules"),
    ("cv2", True, "image decoding and drawing"),
    ("rospy", True, "ROS nodes"),
    ("cv_bridge", True, "ROS image conversion"),
    ("tensorflow", False, "TFLite and SavedModel backends"),
    ("tflite_runtime", False, "TFLite backend without TensorFlow"),
    ("onnxruntime", False, "ONNX backend"),
    ("tensorrt", False, "TensorRT engines on a GPU"),
    ("cuda.bindings", False, "CUDA buffers for TensorRT (cuda-python)"),
    ("pycuda", False, "CUDA buffers for TensorRT (JetPack)"),
    ("dl_vision.msg", False, "the package's generated messages"),
]

# Runs in a child of the interpreter under test: imports one module and
# reports where it came from, its version, every other copy on sys.path that
# it hides, and a few module-specific facts. Standard library only.
_PROBE = r"""
import glob, json, os, sys
name = sys.argv[1]
top = name.split(".")[0]
out = {"name": name, "copies": []}
for entry in sys.path:
    base = os.path.join(os.path.abspath(entry or os.getcwd()), top)
    # A package needs its __init__.py (Debian leaves bare .so stubs in python3.X/dist-packages).
    if os.path.isfile(os.path.join(base, "__init__.py")) or glob.glob(base + ".py") or glob.glob(base + "*.so"):
        if base not in out["copies"]:
            out["copies"].append(base)
try:
    import importlib
    mod = importlib.import_module(name)
    f = getattr(mod, "__file__", None) or (list(getattr(mod, "__path__", [])) or [""])[0]
    out["path"] = os.path.dirname(f) if f.endswith("__init__.py") else f
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib import metadata
            version = metadata.version(top.replace("_", "-"))
        except Exception:
            pass
    out["version"] = None if version is None else str(version)
    if name == "cv_bridge":
        import numpy
        from cv_bridge.boost.cv_bridge_boost import cvtColor2
        from cv_bridge import CvBridge
        bridge = CvBridge()
        msg = bridge.cv2_to_imgmsg(numpy.zeros((2, 3, 3), numpy.uint8), "bgr8")
        rgb = bridge.imgmsg_to_cv2(msg, "rgb8")
        out["conversion"] = list(rgb.shape)
    elif name == "cv2":
        import numpy
        import cv2
        out["conversion"] = list(cv2.cvtColor(numpy.zeros((2, 3, 3), numpy.uint8), cv2.COLOR_BGR2GRAY).shape)
    elif name == "onnxruntime":
        out["providers"] = list(mod.get_available_providers())
        if "CUDAExecutionProvider" in out["providers"]:
            # Listed is not started: the CUDA provider needs CUDA and cuDNN libraries at session start.
            try:
                from onnx import TensorProto, helper
                x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
                graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x],
                                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
                model.ir_version = 8
                session = mod.InferenceSession(model.SerializeToString(),
                                               providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
                out["cuda_session"] = session.get_providers()[0]
            except Exception as err:  # the session failing is a finding about CUDA, not about the import
                out["cuda_session"] = "no session (%s: %s)" % (type(err).__name__, " ".join(str(err).split())[:200])
    elif name == "tensorflow":
        out["tflite"] = hasattr(mod, "lite") and hasattr(mod.lite, "Interpreter")
        out["gpus"] = [d.name for d in mod.config.list_physical_devices("GPU")]
except BaseException as err:
    text = str(err).strip().splitlines()
    out["error"] = "%s: %s" % (type(err).__name__, text[-1] if text else "")
print("DOCTOR_PROBE " + json.dumps(out))
"""

#: Runs in a child of the env's interpreter: loads one spec and its model, runs it once (see probe_model).
_MODEL_PROBE = (
    "import json, sys\n"
    "from dl_vision.doctor import probe_model\n"
    "print('DOCTOR_MODEL ' + json.dumps(probe_model(sys.argv[1])))\n"
)

PROBE_TIMEOUT_S = 120.0
MASTER_TIMEOUT_S = 1.0


def _run(cmd: List[str], timeout: float, env: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Stdout of ``cmd``, or None when it cannot run, fails or times out."""
    try:
        result = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            universal_newlines=True,
            timeout=timeout,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def probe_modules(python: str, names: List[str]) -> Dict[str, Dict[str, Any]]:
    """Import each module in its own child of ``python``, all at once.

    Returns:
        ``{name: facts}`` where facts has ``path``, ``version``, ``copies``
        (every directory on sys.path holding a module of that name, winner
        first) and ``error`` when the import failed.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    children = {}
    for name in names:
        children[name] = subprocess.Popen(
            [python, "-c", _PROBE, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            env=env,
        )
    results: Dict[str, Dict[str, Any]] = {}
    for name, child in children.items():
        try:
            stdout, stderr = child.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            results[name] = {"name": name, "copies": [], "error": "import did not finish in %.0f s" % PROBE_TIMEOUT_S}
            continue
        line = next((ln for ln in stdout.splitlines() if ln.startswith("DOCTOR_PROBE ")), None)
        if line is None:
            tail = (stderr or "").strip().splitlines()
            results[name] = {
                "name": name,
                "copies": [],
                "error": "importing it killed the interpreter (exit %s): %s"
                % (child.returncode, tail[-1] if tail else "no message"),
            }
        else:
            results[name] = json.loads(line[len("DOCTOR_PROBE ") :])
    return results


def _version_tuple(version: str) -> tuple:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _same_path(a: str, b: str) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _where_fix(path: str, package: str) -> str:
    """How to get rid of a module copy at ``path``, judged by where it lives."""
    for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if _same_path(os.path.dirname(path), entry) or path.startswith(os.path.abspath(entry) + os.sep):
            return "remove %s from PYTHONPATH (bootstrap/activate.sh clears it)" % entry
    if "/.local/" in path:
        return "pip uninstall --user %s (or export PYTHONNOUSERSITE=1, as bootstrap/activate.sh does)" % package
    if path.startswith(sys.prefix + os.sep) and sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        return "%s -m pip uninstall -y %s, then rerun bash bootstrap/setup.sh (it pins %s to ROS's)" % (
            sys.executable,
            package,
            package,
        )
    return "remove the copy at %s" % path


class Report:
    """Facts gathered and problems found, in the order they were found."""

    def __init__(self) -> None:
        self.facts: Dict[str, Any] = {}
        self.problems: List[Dict[str, str]] = []

    def problem(self, level: str, check: str, message: str, fix: str) -> None:
        self.problems.append({"level": level, "check": check, "message": message, "fix": fix})

    @property
    def healthy(self) -> bool:
        return not any(p["level"] == ERROR for p in self.problems)

    def as_dict(self) -> Dict[str, Any]:
        return {"healthy": self.healthy, "facts": self.facts, "problems": self.problems}


def _ros_reference(report: Report, ros_python: str) -> Optional[Dict[str, str]]:
    """What ROS's own interpreter sees, isolated from PYTHONPATH and user site-packages."""
    out = _run(
        [
            ros_python,
            "-E",
            "-s",
            "-c",
            "import sys, numpy; print(sys.version.split()[0]); print(numpy.__version__); print(numpy.__file__)",
        ],
        timeout=30,
    )
    if out is None or len(out.split("\n")) < 3:
        report.facts["ros_python"] = {"path": ros_python, "error": "cannot run it or import numpy with it"}
        return None
    version, numpy_version, numpy_file = out.strip().split("\n")[:3]
    ref = {"path": ros_python, "version": version, "numpy": numpy_version, "numpy_path": os.path.dirname(numpy_file)}
    report.facts["ros_python"] = ref
    return ref


def check_ros(report: Report, ros_python: str) -> Optional[Dict[str, str]]:
    """ROS distro, ROS's interpreter and the numpy its compiled modules expect."""
    distro = os.environ.get("ROS_DISTRO")
    if not distro and shutil.which("rosversion"):
        distro = (_run(["rosversion", "-d"], timeout=10) or "").strip() or None
    report.facts["ros_distro"] = distro
    report.facts["ros_root"] = "/opt/ros/noetic" if os.path.isdir("/opt/ros/noetic") else None
    if distro is None:
        report.problem(
            ERROR,
            "ros",
            "no ROS found (ROS_DISTRO unset and no rosversion on PATH)",
            "run bash bootstrap/setup.sh (installs ROS Noetic's packages), then source bootstrap/activate.sh",
        )
    return _ros_reference(report, ros_python)


def check_interpreter(report: Report) -> None:
    """Which interpreter runs here, and whether ``python3`` on PATH is the same one."""
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    conda_meta = os.path.isdir(os.path.join(sys.prefix, "conda-meta"))
    report.facts["env_python"] = {
        "path": sys.executable,
        "version": platform.python_version(),
        "prefix": sys.prefix,
        "kind": "venv" if in_venv else "conda" if conda_meta else "system",
    }
    on_path = shutil.which("python3")
    path_prefix = (_run([on_path, "-c", "import sys; print(sys.prefix)"], timeout=30) or "").strip() if on_path else ""
    report.facts["python3_on_path"] = {"path": on_path, "prefix": path_prefix or None}
    if on_path is None:
        report.problem(WARNING, "path", "no python3 on PATH", "source bootstrap/activate.sh")
    elif not path_prefix or not _same_path(path_prefix, sys.prefix):
        report.problem(
            WARNING,
            "path",
            "python3 on PATH is %s (prefix %s), not this env (%s)" % (on_path, path_prefix or "?", sys.prefix),
            "source bootstrap/activate.sh",
        )
    for var in ("PYTHONHOME",):
        if os.environ.get(var):
            report.problem(
                WARNING,
                "path",
                "%s=%s redirects the interpreter's standard library" % (var, os.environ[var]),
                "unset %s (bootstrap/activate.sh does)" % var,
            )
    conda = os.environ.get("CONDA_PREFIX")
    if (
        conda
        and not _same_path(conda, sys.prefix)
        and os.path.join(conda, "bin") in os.environ.get("PATH", "").split(os.pathsep)
    ):
        report.problem(
            WARNING,
            "path",
            "conda env %s is active and on PATH; ROS nodes may pick its python3" % conda,
            "source bootstrap/activate.sh (it deactivates conda in this shell only)",
        )


def check_modules(report: Report, ros_ref: Optional[Dict[str, str]], probes: Dict[str, Dict[str, Any]]) -> None:
    """Import errors, shadowed copies and numpy/ABI mismatches."""
    report.facts["modules"] = probes
    _check_numpy_abi(report, ros_ref, probes)
    for name, required, purpose in MODULES:
        facts = probes[name]
        if "error" in facts:
            if required:
                report.problem(
                    ERROR, name, "cannot import %s (%s): %s" % (name, purpose, facts["error"]), _import_fix(name, facts)
                )
            elif name == "dl_vision.msg":
                report.problem(
                    WARNING,
                    name,
                    "dl_vision messages are not built or not on the path: %s" % facts["error"],
                    "bash bootstrap/setup.sh (builds the workspace), then source bootstrap/activate.sh",
                )
            continue
        copies = facts.get("copies", [])
        if name != "dl_vision.msg" and len(copies) > 1:
            report.problem(
                WARNING,
                name,
                "%s from %s shadows %s" % (name, copies[0], ", ".join(copies[1:])),
                _where_fix(copies[0], name) if name == "numpy" else "make sure only one copy is meant to be used",
            )
    if "error" in probes["tensorflow"] and "error" in probes["tflite_runtime"]:
        report.problem(
            ERROR,
            "tensorflow",
            "neither tensorflow nor tflite_runtime imports (%s); the default TFLite models cannot run"
            % probes["tensorflow"]["error"],
            "bash bootstrap/setup.sh (installs tensorflow-cpu into the env); on a Jetson install NVIDIA's wheel",
        )
    if "error" in probes["onnxruntime"]:
        report.problem(
            WARNING,
            "onnxruntime",
            "onnxruntime does not import: ONNX models cannot run (%s)" % probes["onnxruntime"]["error"],
            "bash bootstrap/setup.sh (installs onnxruntime)",
        )


def _import_fix(name: str, facts: Dict[str, Any]) -> str:
    if name in ("rospy", "cv_bridge") and not facts.get("copies"):
        return "this interpreter (%s) does not see ROS: source bootstrap/activate.sh, or bash bootstrap/setup.sh" % (
            sys.executable
        )
    if "numpy" in facts.get("error", "") or "multiarray" in facts.get("error", ""):
        return "numpy does not match what %s was built for: see the numpy error above" % name
    return "bash bootstrap/setup.sh (installs it), then source bootstrap/activate.sh"


def _check_numpy_abi(report: Report, ros_ref: Optional[Dict[str, str]], probes: Dict[str, Dict[str, Any]]) -> None:
    numpy_facts = probes["numpy"]
    if ros_ref is None or "error" in numpy_facts or not numpy_facts.get("version"):
        return
    found, expected = numpy_facts["version"], ros_ref["numpy"]
    where = numpy_facts.get("path", "?")
    if _version_tuple(found)[0] != _version_tuple(expected)[0]:
        report.problem(
            ERROR,
            "numpy",
            "numpy %s from %s shadows ROS's numpy %s (%s); cv_bridge's boost module and cv2 were built for numpy %d.x"
            % (found, where, expected, ros_ref["numpy_path"], _version_tuple(expected)[0]),
            _where_fix(where, "numpy"),
        )
    elif _version_tuple(found) < _version_tuple(expected):
        report.problem(
            WARNING,
            "numpy",
            "numpy %s from %s is older than ROS's numpy %s; modules built against the newer API may fail"
            % (found, where, expected),
            _where_fix(where, "numpy"),
        )


def check_models(report: Report) -> None:
    """Every default model cached and sha256-intact; sample images too (warnings only)."""
    from dl_vision import assets

    report.facts["cache"] = str(assets.cache_dir())
    for key in assets.MODELS + assets.SAMPLE_IMAGES:
        trouble = assets.problem(key)
        if trouble is None:
            continue
        is_model = key in assets.MODELS
        report.problem(
            ERROR if is_model else WARNING,
            "models" if is_model else "images",
            ("model " if is_model else "sample image ") + trouble,
            "python3 -m dl_vision.assets (or rosrun dl_vision fetch_assets) downloads and verifies it",
        )


def probe_model(spec_name: str) -> Dict[str, Any]:
    """Load a spec and its model and run it once on a sample photo (zeros when none is cached).

    Runs in a child process (:func:`check_model_specs`), so a runtime that crashes on the file
    costs the child, not the doctor.

    Returns:
        ``{"spec", "task", "format", "file", "provider", "input", "load_s", "result"}``, or
        ``{"spec", "error"}`` with the package's one-line error.
    """
    import time

    import numpy as np

    from dl_vision import assets
    from dl_vision.errors import DlVisionError
    from dl_vision.pipeline import Detector, Segmenter
    from dl_vision.spec import load_spec

    try:
        spec = load_spec(spec_name)
        started = time.perf_counter()
        detecting = spec.task != "segmentation"  # a cascade runs as a detector, as in infer
        model = (Detector if detecting else Segmenter).from_spec(spec)
        load_s = time.perf_counter() - started
        first = getattr(model, "detector", model)  # a cascade's first stage: its file, input and provider
        image_name = "astronaut" if assets.problem("astronaut") is None else None
        if image_name:
            import cv2

            image = cv2.imread(str(assets.asset_path(image_name)), cv2.IMREAD_COLOR)
        else:
            image = np.zeros((480, 640, 3), np.uint8)
        output = model(image)
        if detecting:
            found = "%d detection%s" % (len(output), "" if len(output) == 1 else "s")
            result = "%s on %s" % (found, image_name or "a black 640x480 image")
        else:
            share = float(np.mean(output.class_map > 0))
            result = "%.0f%% foreground on %s" % (100 * share, image_name or "a black 640x480 image")
        return {
            "spec": spec_name,
            "task": spec.task,
            "format": first.spec.format,
            "file": str(first.backend.path),
            "provider": first.backend.provider,
            "input": "%dx%d" % first.input_size[::-1],
            "load_s": round(load_s, 3),
            "result": result,
        }
    except DlVisionError as err:
        return {"spec": spec_name, "error": str(err)}


def check_model_specs(report: Report, specs: List[str]) -> None:
    """``--model SPEC``: each spec loaded with its model in a child process, and run once."""
    models = report.facts.setdefault("model_specs", [])
    for name in specs:
        try:
            result = subprocess.run(
                [sys.executable, "-c", _MODEL_PROBE, name],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                universal_newlines=True,
                timeout=PROBE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            outcome: Dict[str, Any] = {"spec": name, "error": "loading took over %d s" % PROBE_TIMEOUT_S}
        else:
            lines = [line for line in result.stdout.splitlines() if line.startswith("DOCTOR_MODEL ")]
            if lines:
                outcome = json.loads(lines[-1][len("DOCTOR_MODEL ") :])
            elif result.returncode < 0:
                outcome = {"spec": name, "error": "loading it killed the process with signal %d" % -result.returncode}
            else:
                tail = result.stderr.strip().splitlines()
                outcome = {"spec": name, "error": "loading it failed: %s" % (tail[-1] if tail else "no message")}
        models.append(outcome)
        if "error" in outcome:
            report.problem(
                ERROR,
                "model",
                "%s: %s" % (name, outcome["error"]),
                "correct the spec or copy the model file again (python3 -m dl_vision.assets for a default model); "
                "a node given this model stops at start with the same line",
            )


def check_gpu(report: Report, probes: Dict[str, Dict[str, Any]]) -> None:
    """GPUs, TensorRT and the accelerated onnxruntime providers; CPU-only is not a problem."""
    gpus: List[str] = []
    if shutil.which("nvidia-smi"):
        out = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], timeout=10)
        gpus = [ln.strip() for ln in (out or "").splitlines() if ln.strip()]
    jetson = None
    if os.path.isfile("/etc/nv_tegra_release"):
        with open("/etc/nv_tegra_release") as f:
            jetson = f.readline().strip()
    providers = probes["onnxruntime"].get("providers", [])
    trt_version = probes["tensorrt"].get("version")
    report.facts["gpu"] = {
        "nvidia_smi": gpus,
        "jetson": jetson,
        "tensorrt": trt_version,
        "tensorrt_precisions": _tensorrt_precisions(trt_version),
        "cuda_python": probes["cuda.bindings"].get("version"),
        "pycuda": probes["pycuda"].get("version"),
        "onnxruntime_providers": providers,
        "onnxruntime_cuda_session": probes["onnxruntime"].get("cuda_session"),
    }
    started = probes["onnxruntime"].get("cuda_session")
    if started and started != "CUDAExecutionProvider":
        report.problem(
            WARNING,
            "gpu",
            "onnxruntime lists CUDAExecutionProvider but a session falls back to %s (CUDA or cuDNN libraries missing)"
            % started,
            "install the CUDA and cuDNN libraries onnxruntime-gpu needs (pip install 'onnxruntime-gpu[cuda,cudnn]')",
        )
    if trt_version and "error" in probes["cuda.bindings"] and "error" in probes["pycuda"]:
        report.problem(
            WARNING,
            "gpu",
            "TensorRT %s imports but neither cuda-python nor pycuda does: engines cannot get GPU buffers" % trt_version,
            "DL_VISION_GPU=cuda bash bootstrap/setup.sh (x86), or pip install pycuda (Jetson)",
        )
    accelerated = [p for p in providers if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    if (gpus or jetson) and providers and not accelerated:
        report.problem(
            WARNING,
            "gpu",
            "a GPU is present but onnxruntime offers only %s" % ", ".join(providers),
            "install onnxruntime-gpu (x86_64) or NVIDIA's Jetson onnxruntime wheel into the env",
        )
    if (gpus or jetson) and "error" in probes["tensorrt"]:
        report.problem(
            WARNING,
            "gpu",
            "a GPU is present but tensorrt does not import (%s)" % probes["tensorrt"]["error"],
            "install TensorRT's Python bindings (JetPack: apt python3-libnvinfer); the env sees system packages",
        )


def _tensorrt_precisions(version: Optional[str]) -> List[str]:
    """The precisions build_engine offers with this TensorRT (none when it is absent)."""
    if not version:
        return []
    try:
        from dl_vision.engines.trt_api import PRECISIONS, TrtFeatures

        features = TrtFeatures.of(version)
    except Exception:  # an unparsable version or a broken numpy: the probe facts say more
        return []
    return [p for p in PRECISIONS if features.precision_problem(p) is None]


def check_master(report: Report) -> None:
    """Whether a ROS master answers at ROS_MASTER_URI (not having one is fine for offline work)."""
    uri = os.environ.get("ROS_MASTER_URI", "http://localhost:11311")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(MASTER_TIMEOUT_S)
    try:
        code, _, pid = ServerProxy(uri).getPid("/dl_vision_doctor")
        answer = pid if code == 1 else None
    except (OSError, ValueError, Exception):  # any transport or protocol failure means "no master"
        answer = None
    finally:
        socket.setdefaulttimeout(old)
    report.facts["master"] = {"uri": uri, "pid": answer}


def diagnose(
    ros_python: Optional[str] = None, check_assets: bool = True, model_specs: Optional[List[str]] = None
) -> Report:
    """Run every check and return the report (no printing); ``model_specs``: specs to load and run."""
    report = Report()
    ros_python = ros_python or os.environ.get("DL_VISION_ROS_PYTHON", DEFAULT_ROS_PYTHON)
    probes = probe_modules(sys.executable, [name for name, _, _ in MODULES])
    ros_ref = check_ros(report, ros_python)
    check_interpreter(report)
    check_modules(report, ros_ref, probes)
    if check_assets:
        check_models(report)
    check_gpu(report, probes)
    check_master(report)
    if model_specs:
        check_model_specs(report, model_specs)
    return report


def format_report(report: Report) -> str:
    """The human-readable report: facts first, then one line per problem with its fix."""
    f = report.facts
    lines = ["dl_vision doctor"]
    ros = f.get("ros_python", {})
    lines.append(
        "  ROS          %s, interpreter %s (%s), numpy %s"
        % (
            f.get("ros_distro") or "not found",
            ros.get("path"),
            ros.get("version", ros.get("error")),
            ros.get("numpy", "?"),
        )
    )
    env = f["env_python"]
    lines.append("  env          %s (Python %s, %s)" % (env["path"], env["version"], env["kind"]))
    lines.append("  python3      %s" % (f["python3_on_path"]["path"] or "not on PATH"))
    for name, required, purpose in MODULES:
        m = f["modules"][name]
        if "error" in m and not required and m["error"].startswith("ModuleNotFoundError"):
            lines.append("  %-12s not installed (optional: %s)" % (name, purpose))
        elif "error" in m:
            lines.append("  %-12s missing: %s" % (name, m["error"]))
        else:
            lines.append("  %-12s %-10s %s" % (name, m.get("version") or "", m.get("path")))
    gpu = f["gpu"]
    lines.append(
        "  GPU          %s; TensorRT %s%s; onnxruntime providers: %s%s"
        % (
            ", ".join(gpu["nvidia_smi"]) or gpu["jetson"] or "none (CPU inference)",
            gpu["tensorrt"] or "not installed",
            " (builds %s)" % "/".join(gpu["tensorrt_precisions"]) if gpu["tensorrt_precisions"] else "",
            ", ".join(gpu["onnxruntime_providers"]) or "-",
            "; a CUDA session runs on %s" % gpu["onnxruntime_cuda_session"] if gpu["onnxruntime_cuda_session"] else "",
        )
    )
    if "cache" in f:
        lines.append("  models       %s" % f["cache"])
    master = f["master"]
    lines.append(
        "  ROS master   %s at %s"
        % ("answers (pid %s)" % master["pid"] if master["pid"] else "not running", master["uri"])
    )
    for m in f.get("model_specs", []):
        if "error" in m:
            lines.append("  model        %s: broken (see below)" % m["spec"])
        else:
            lines.append(
                "  model        %(spec)s: %(task)s, %(format)s on %(provider)s, input %(input)s, "
                "loaded in %(load_s).2f s, %(result)s (%(file)s)" % m
            )
    for p in report.problems:
        lines.append("%s: %s: %s. Fix: %s" % (p["level"], p["check"], p["message"], p["fix"]))
    errors = sum(p["level"] == ERROR for p in report.problems)
    warnings = len(report.problems) - errors
    lines.append("doctor: %s (%d errors, %d warnings)" % ("healthy" if report.healthy else "BROKEN", errors, warnings))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: print the report (or JSON); exit 0 when healthy, 1 when broken."""
    parser = argparse.ArgumentParser(prog="doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--ros-python", help="ROS's interpreter (default: $DL_VISION_ROS_PYTHON or /usr/bin/python3)")
    parser.add_argument("--no-models", action="store_true", help="skip the model cache check")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="SPEC",
        help="also load this model spec (name or YAML path) and its model in a child process and run it once; "
        "says what is wrong with it (repeatable)",
    )
    args = parser.parse_args(argv)
    report = diagnose(args.ros_python, check_assets=not args.no_models, model_specs=args.model)
    print(json.dumps(report.as_dict(), indent=2, sort_keys=True) if args.json else format_report(report))
    return 0 if report.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
