"""``build_engine``: build a TensorRT engine from an ONNX model (or a spec naming one), optionally gated.

::

    rosrun dl_vision build_engine coco_onnx --precision fp16 --check ~/frames          # into the cache
    rosrun dl_vision build_engine coco_onnx --precision int8 --calibration robot.bag \\
        --check robot.bag --out ~/models/coco_int8.engine
    rosrun dl_vision build_engine model.onnx --precision fp16 --batch 1:4:8 --out model.engine

Without ``--out`` the engine goes to the cache (``$DL_VISION_CACHE/engines``) under the key a spec
with ``runtime: {engine: tensorrt, precision: ..., batch: ...}`` looks up, so nodes find it. With
``--check`` the engine is first scored against the reference (the same ONNX on ONNX Runtime's CPU
provider, or ``--reference SPEC``) on those frames, and written only when its agreement reaches
the floor (:data:`~dl_vision.evaluation.agreement.FLOORS`, or ``--floor``). Exit status: 0 written,
1 below the floor (nothing written), 2 a user's error (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Tuple

from dl_vision.errors import ConfigError, DlVisionError
from dl_vision.image_sources import DEFAULT_TOPIC

STATUS_BELOW_FLOOR = 1
STATUS_USER_ERROR = 2

#: ``runtime`` keys that belong to the TensorRT route and not to ONNX Runtime.
_TENSORRT_KEYS = ("engine", "precision", "batch", "io_scales", "device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="build_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model spec (name or YAML) with an ONNX file, or an .onnx file")
    parser.add_argument("--precision", required=True, choices=("fp32", "fp16", "int8"))
    parser.add_argument("--calibration", help="INT8 calibration frames: an image folder or a bag")
    parser.add_argument("--calibration-frames", type=int, default=500, help="at most this many calibration frames")
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help="image topic of the bags")
    parser.add_argument("--batch", help="MIN:OPT:MAX batch sizes for a model with a dynamic batch (default 1:1:1)")
    parser.add_argument("--out", type=Path, help="engine file to write (default: the engine cache)")
    parser.add_argument("--check", help="score the engine against the reference on these frames (folder or bag)")
    parser.add_argument("--check-frames", type=int, default=200, help="at most this many --check frames")
    parser.add_argument("--reference", help="reference spec for --check (default: the same ONNX on ONNX Runtime CPU)")
    parser.add_argument("--floor", type=float, help="agreement floor (default: fp32 0.99, fp16 0.95, int8 0.90)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--workspace", type=int, default=1024, help="builder workspace limit, MiB")
    return parser


def _model(args: argparse.Namespace) -> Tuple[Path, Optional[Any]]:
    """``(onnx path, spec or None)`` of the positional argument."""
    from dl_vision.spec import load_spec

    if args.model.lower().endswith(".onnx"):
        path = Path(args.model)
        if not path.is_file():
            raise ConfigError("build_engine: ONNX file %s does not exist" % path)
        if args.calibration or args.check:
            raise ConfigError(
                "build_engine: --calibration and --check need a model spec (its input section pre-processes the "
                "frames, its decoder reads the outputs), found a bare ONNX file %s" % path
            )
        return path, None
    spec = load_spec(args.model, allow_cascade=False)
    if spec.format != "onnx":
        raise ConfigError("%s: format: build_engine needs an onnx model, found %s" % (spec.source, spec.format))
    return spec.model_path(), spec


def _engine_spec(spec: Any, engine: Path, device: int) -> Any:
    """``spec`` running the built engine file."""
    out = copy.copy(spec)
    out.format, out.file, out.asset = "tensorrt", engine, None
    out.runtime = {"device": device}
    return out


def _reference_spec(spec: Any) -> Any:
    """``spec`` on ONNX Runtime's CPU provider (TensorRT options dropped)."""
    out = copy.copy(spec)
    out.runtime = {k: v for k, v in spec.runtime.items() if k not in _TENSORRT_KEYS}
    out.runtime["providers"] = ["cpu"]
    return out


def check_engine(spec: Any, engine: Path, args: argparse.Namespace, floor: float) -> Tuple[bool, str, Any]:
    """Score the engine against its reference; ``(passed, summary line, report)``."""
    from dl_vision.evaluation.agreement import format_agreement, gated_metric, score_agreement
    from dl_vision.image_sources import iter_images
    from dl_vision.pipeline import Detector, Segmenter

    model_cls = Detector if spec.task == "detection" else Segmenter
    reference = model_cls.from_spec(args.reference or _reference_spec(spec))
    candidate = model_cls.from_spec(_engine_spec(spec, engine, args.device))
    try:
        report = score_agreement(candidate, reference, iter_images(args.check, args.topic, args.check_frames))
    finally:
        candidate.close()
        reference.close()
    print(format_agreement(report))
    name, value = gated_metric(report)
    passed = value is not None and value >= floor
    return passed, "%s %s %.4f (floor %.2f)" % ("PASS" if passed else "FAIL", name, value or 0.0, floor), report


def run(args: argparse.Namespace) -> int:
    """Build (and check) the engine; raises :class:`DlVisionError` on a user's mistake."""
    from dl_vision.engines.build import BatchProfile, build_serialized_engine, write_engine
    from dl_vision.engines.trt_api import TrtFeatures, import_tensorrt
    from dl_vision.evaluation.agreement import FLOORS

    onnx_path, spec = _model(args)
    if args.precision == "int8" and not args.calibration:
        raise ConfigError("build_engine: --precision int8 needs --calibration BAG|FOLDER (frames like the robot's)")
    profile = BatchProfile.parse(args.batch) if args.batch else None
    trt = import_tensorrt("build_engine")
    problem = TrtFeatures.of(trt.__version__).precision_problem(args.precision)
    if problem:
        raise ConfigError(problem)

    from dl_vision.backends.cuda_memory import CudaDevice
    from dl_vision.engines.cache import cache_root, engine_key, write_key

    cuda = CudaDevice(args.device)
    try:
        gpu, capability = cuda.properties()
        key = engine_key(onnx_path, args.precision, profile, trt.__version__, gpu, capability)
        calibration = None
        if args.precision == "int8":
            from dl_vision.engines.calibration import calibrator_factory
            from dl_vision.image_sources import iter_images

            frames = (image for _, image in iter_images(args.calibration, args.topic, args.calibration_frames))
            calibration = calibrator_factory(cuda, frames, spec.input)
        with cuda.activate():
            data = build_serialized_engine(trt, onnx_path, args.precision, profile, calibration, args.workspace)
    finally:
        cuda.close()
    out = args.out or cache_root() / key.filename(onnx_path.stem)
    if args.check:
        floor = args.floor if args.floor is not None else FLOORS[args.precision]
        with tempfile.TemporaryDirectory(prefix="build_engine_") as scratch:
            trial = write_engine(data, Path(scratch) / out.name)
            passed, summary, _ = check_engine(spec, trial, args, floor)
        print(summary)
        if not passed:
            print("build_engine: %s not written (agreement below the floor)" % out, file=sys.stderr)
            return STATUS_BELOW_FLOOR
    write_engine(data, out)
    write_key(key, out, onnx_path)
    print(
        "wrote %s (%s, TensorRT %s, %s sm_%d%d, %d bytes)"
        % (out, args.precision, trt.__version__, gpu, *capability, len(data))
    )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: exit 0 written, 1 below the agreement floor, 2 a user's error."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return run(args)
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return STATUS_USER_ERROR
