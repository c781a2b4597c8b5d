"""``bash bootstrap/setup.sh gpu-check``: TensorRT end to end on any NVIDIA machine, ending in PASS or FAIL.

Steps (meant to end within 8 minutes on a Jetson; not yet timed on any GPU):

1. the CUDA buffer tests (``test/gpu/test_cuda_memory.py``) with the binding this machine picks;
2. an ONNX model: ``--model SPEC`` (``format: onnx``), or the shipped BlazeFace short-range model
   exported from TFLite with tf2onnx into ``$DL_VISION_CACHE/onnx``;
3. for each precision this TensorRT builds (FP32, FP16, and INT8 on 8.5-10.x, calibrated on the
   sample photos and their mirror images): build the engine with the builder API, run it through
   the TensorRT backend in a :class:`~dl_vision.pipeline.Detector`, score its agreement with the
   same ONNX on ONNX Runtime's CPU provider against the precision's floor, and time the model
   alone on the GPU (median and p90 of ``--runs`` calls after a warm-up);
4. the first-use route: a spec with ``runtime: {engine: tensorrt, precision: fp16}`` builds its
   engine into the cache, and a second load reuses that file.

Exit status 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from dl_vision.errors import one_line
from dl_vision.latency import summarize_ms

LOG = logging.getLogger("dl_vision")
REPO = Path(__file__).resolve().parents[3]

#: The model exported when no ``--model`` is given: BlazeFace short range converts cleanly with
#: tf2onnx (the full-range model is a sparse TFLite file tf2onnx cannot read).
DEFAULT_SPEC = "face_short_range"


def export_default_onnx() -> Tuple[Any, Path]:
    """``(spec, onnx path)`` of BlazeFace short range exported to ONNX (cached by the TFLite file's digest)."""
    from dl_vision.assets import cache_dir, sha256_of
    from dl_vision.errors import BackendUnavailableError
    from dl_vision.spec import load_spec

    spec = load_spec(DEFAULT_SPEC)
    tflite = spec.model_path()
    out = cache_dir() / "onnx" / ("%s.%s.onnx" % (DEFAULT_SPEC, sha256_of(tflite)[:12]))
    if not out.is_file():
        try:
            import tf2onnx
        except ImportError as err:
            raise BackendUnavailableError(
                "gpu-check: exporting %s to ONNX needs tf2onnx (pip install tf2onnx==1.17.0), found none; "
                "or pass --model SPEC with an ONNX file" % DEFAULT_SPEC
            ) from err
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".part")  # renamed when whole: an interrupted export is never reused
        tf2onnx.convert.from_tflite(str(tflite), opset=13, output_path=str(partial))
        os.replace(str(partial), str(out))
    onnx_spec = copy.copy(spec)
    onnx_spec.format, onnx_spec.file, onnx_spec.asset = "onnx", out, None
    onnx_spec.runtime = {"providers": ["cpu"]}
    return onnx_spec, out


def sample_frames(folder: Path) -> Path:
    """Write the sample photos and their mirror images into ``folder`` (frames for calibration and checks)."""
    from dl_vision import assets

    folder.mkdir(parents=True, exist_ok=True)
    for name in assets.SAMPLE_IMAGES:
        image = cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR)
        cv2.imwrite(str(folder / ("%s.png" % name)), image)
        cv2.imwrite(str(folder / ("%s_mirrored.png" % name)), image[:, ::-1])
    return folder


def time_model(backend: Any, tensor: np.ndarray, runs: int) -> Dict[str, Optional[float]]:
    """:func:`~dl_vision.latency.summarize_ms` of ``backend.run(tensor)`` after ``runs // 10`` warm-up calls."""
    for _ in range(max(runs // 10, 3)):
        backend.run(tensor)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.run(tensor)
        times.append((time.perf_counter() - start) * 1e3)
    return summarize_ms(times)


def _step(results: List[Dict[str, Any]], name: str, passed: bool, detail: str) -> None:
    results.append({"step": name, "passed": passed, "detail": detail})
    print("%s  %-28s %s" % ("PASS" if passed else "FAIL", name, detail), flush=True)


def check_precision(
    trt: Any, spec: Any, onnx: Path, precision: str, frames: Path, reference: Any, workdir: Path, runs: int
) -> Tuple[bool, str]:
    """Build, load, score and time one precision; ``(passed, one-line detail)``."""
    from dl_vision.backends.cuda_memory import CudaDevice
    from dl_vision.engines.build import build_serialized_engine, write_engine
    from dl_vision.engines.calibration import calibrator_factory
    from dl_vision.evaluation.agreement import FLOORS, gated_metric, score_agreement
    from dl_vision.image_sources import iter_images
    from dl_vision.pipeline import Detector

    cuda = CudaDevice(0)
    try:
        calibration = None
        if precision == "int8":
            calibration = calibrator_factory(cuda, (im for _, im in iter_images(frames)), spec.input)
        started = time.perf_counter()
        with cuda.activate():
            data = build_serialized_engine(trt, onnx, precision, None, calibration)
        build_s = time.perf_counter() - started
    finally:
        cuda.close()
    engine = write_engine(data, workdir / ("%s.%s.engine" % (onnx.stem, precision)))
    engine_spec = copy.copy(spec)
    engine_spec.format, engine_spec.file, engine_spec.runtime = "tensorrt", engine, {"device": 0}
    candidate = Detector.from_spec(engine_spec)
    try:
        report = score_agreement(candidate, reference, iter_images(frames))
        tensor, _ = candidate.preprocessor(next(iter_images(frames))[1])
        timing = time_model(candidate.backend, tensor, runs)
    finally:
        candidate.close()
    name, value = gated_metric(report)
    floor = FLOORS[precision]
    a = report["agreement"]
    detail = "%s %.3f (floor %.2f), mAP %.3f, drift %.1f px; build %.0f s; GPU %.2f ms median, %.2f p90" % (
        name,
        value or 0.0,
        floor,
        a["mAP"] or 0.0,
        a["max_box_drift_px"] or 0.0,
        build_s,
        timing["p50"],
        timing["p90"],
    )
    return value is not None and value >= floor, detail


def check_first_use(spec: Any, cache: Path) -> Tuple[bool, str]:
    """A ``runtime: {engine: tensorrt, precision: fp16}`` spec builds its cached engine once, then reuses it."""
    from dl_vision.pipeline import Detector

    first_use = copy.copy(spec)
    first_use.runtime = {"engine": "tensorrt", "precision": "fp16"}
    started = time.perf_counter()
    model = Detector.from_spec(first_use)
    first_s, engine = time.perf_counter() - started, model.backend.engine_path
    model.close()
    started = time.perf_counter()
    model = Detector.from_spec(first_use)
    second_s, reused = time.perf_counter() - started, model.backend.engine_path
    model.close()
    passed = engine == reused and engine.is_file() and cache in engine.parents
    return passed, "%s: first load %.1f s, second %.1f s (same file: %s)" % (
        engine.name,
        first_s,
        second_s,
        engine == reused,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="an ONNX detector spec (default: %s exported with tf2onnx)" % DEFAULT_SPEC)
    parser.add_argument("--runs", type=int, default=200, help="timed model runs per engine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    results: List[Dict[str, Any]] = []
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", str(REPO / "test" / "gpu")],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
    )
    summary = (tests.stdout.strip().splitlines() or ["no output"])[-1]
    # All skipped (no GPU, no binding) is a failure here: this command exists to exercise the GPU.
    ran = tests.returncode == 0 and " passed" in summary and "skipped" not in summary
    _step(results, "CUDA buffer tests", ran, "pytest test/gpu: %s" % summary)
    if not ran:
        print(tests.stdout, flush=True)
    try:
        from dl_vision.engines.cache import cache_root
        from dl_vision.engines.trt_api import PRECISIONS, TrtFeatures, import_tensorrt
        from dl_vision.pipeline import Detector
        from dl_vision.spec import load_spec

        trt = import_tensorrt("gpu-check")
        features = TrtFeatures.of(trt.__version__)
        if args.model:
            spec = load_spec(args.model)
            onnx = spec.model_path()
            spec.runtime = {"providers": ["cpu"]}
        else:
            spec, onnx = export_default_onnx()
        print("TensorRT %s, model %s (%s)" % (trt.__version__, spec.name, onnx), flush=True)
        reference = Detector.from_spec(spec)
        with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
            frames = sample_frames(Path(scratch) / "frames")
            tensor, _ = reference.preprocessor(cv2.imread(str(next(iter(sorted(frames.iterdir())))), cv2.IMREAD_COLOR))
            cpu = time_model(reference.backend, tensor, max(args.runs // 4, 20))
            print("reference: ONNX Runtime CPU %.2f ms median" % cpu["p50"], flush=True)
            for precision in PRECISIONS:
                problem = features.precision_problem(precision)
                if problem:
                    print("skip  %-28s %s" % (precision, problem), flush=True)
                    continue
                try:
                    passed, detail = check_precision(
                        trt, spec, onnx, precision, frames, reference, Path(scratch), args.runs
                    )
                except Exception as err:  # noqa: BLE001 - every failure becomes a FAIL line, then the summary
                    passed, detail = False, "%s: %s" % (type(err).__name__, one_line(err))
                _step(results, "engine %s" % precision, passed, detail)
        if features.precision_problem("fp16") is None:
            try:
                passed, detail = check_first_use(spec, cache_root())
            except Exception as err:  # noqa: BLE001 - as above
                passed, detail = False, "%s: %s" % (type(err).__name__, one_line(err))
            _step(results, "first-use engine cache", passed, detail)
        reference.close()
    except Exception as err:  # noqa: BLE001 - no TensorRT, no GPU, no model: one FAIL line with the reason
        _step(results, "TensorRT", False, "%s: %s" % (type(err).__name__, one_line(err)))
    passed = all(r["passed"] for r in results)
    print(
        "gpu-check: %s (%d of %d steps passed)"
        % ("PASS" if passed else "FAIL", sum(r["passed"] for r in results), len(results))
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
