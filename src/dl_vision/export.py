"""``export_onnx``: convert a spec's TensorFlow model to ONNX with tf2onnx.

ONNX Runtime (CPU, CUDA, TensorRT providers) and TensorRT's engine builder then run the
same weights::

    rosrun dl_vision export_onnx coco ~/models/coco.onnx

The export keeps the model's inputs and outputs, named as the spec's decoder expects (a
frozen graph's ``detection_boxes:0`` becomes ``detection_boxes``), with their dynamic
dimensions; so a copy of the spec with ``format: onnx`` and ``file:`` pointing at the export
runs it (``config/models/coco_onnx.yaml`` does that with the export the cache makes on first
use). Formats converted: ``frozen_graph`` (TF1 graphs, e.g. the TF Object Detection API's
model zoo). tf2onnx's TFLite converter crashed the interpreter on the MediaPipe models here,
so ``tflite`` specs are refused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from dl_vision.backends.frozen_graph import read_graph_def, short_name, tensor_names
from dl_vision.backends.tensorflow import import_tensorflow
from dl_vision.errors import BackendUnavailableError, ConfigError, DlVisionError, ModelError, one_line
from dl_vision.spec import ModelSpec, load_spec

#: The opset of the exports: ONNX Runtime >= 1.8 and TensorRT >= 8 run it.
DEFAULT_OPSET = 13
#: Spec formats :func:`export_onnx` converts.
EXPORTABLE_FORMATS = ("frozen_graph",)


def _import_tf2onnx() -> Any:
    import_tensorflow()  # first: its environment settings apply before tf2onnx imports TensorFlow
    try:
        import tf2onnx
    except ImportError as err:
        raise BackendUnavailableError(
            "export_onnx needs tf2onnx: expected `pip install tf2onnx` (bootstrap/requirements.txt pins it), "
            "found it not installed (%s)" % err
        ) from err
    return tf2onnx


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Only errors from these loggers meanwhile: tf2onnx logs its progress, TensorFlow its deprecations."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def export_onnx(spec: Union[str, Path, ModelSpec], out: Union[str, Path], opset: int = DEFAULT_OPSET) -> Dict[str, Any]:
    """Write the ONNX export of a spec's model.

    Args:
        spec: spec name, YAML path or :class:`ModelSpec`; its format must be one of
            :data:`EXPORTABLE_FORMATS`.
        out: the ``.onnx`` file to write (its directory is created).
        opset: ONNX opset.

    Returns:
        ``{"path", "inputs", "outputs", "opset", "tf2onnx", "seconds"}``.

    Raises:
        ConfigError: the spec's format cannot be exported, or its tensor names are bad.
        BackendUnavailableError: TensorFlow or tf2onnx is missing.
        ModelError: the model cannot be read or converted.
    """
    spec = load_spec(spec, allow_cascade=False)
    if spec.format not in EXPORTABLE_FORMATS:
        raise ConfigError(
            "%s: format: export_onnx converts %s models, found %s"
            % (spec.source, " or ".join(EXPORTABLE_FORMATS), spec.format)
        )
    runtime = spec.runtime
    try:
        outputs = tensor_names("outputs", runtime.get("outputs"))
        inputs = tensor_names("inputs", runtime.get("inputs"))
    except ConfigError as err:
        raise ConfigError("%s: %s" % (spec.source, err)) from err
    model_path = spec.model_path()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tf = import_tensorflow()
    tf2onnx = _import_tf2onnx()
    graph_def = read_graph_def(tf, model_path)
    start = time.perf_counter()
    try:
        with _quiet("tf2onnx", "tensorflow"), contextlib.redirect_stdout(io.StringIO()):
            tf2onnx.convert.from_graph_def(
                graph_def,
                input_names=inputs,
                output_names=outputs,
                opset=opset,
                tensors_to_rename={name: short_name(name) for name in inputs + outputs},
                output_path=str(out),
            )
    except Exception as err:  # noqa: BLE001 - tf2onnx raises ValueError, KeyError, RuntimeError... per op
        with contextlib.suppress(OSError):
            out.unlink()
        raise ModelError(
            "tf2onnx could not convert %s (opset %d): %s" % (model_path.name, opset, one_line(err))
        ) from err
    return {
        "path": str(out),
        "inputs": [short_name(n) for n in inputs],
        "outputs": [short_name(n) for n in outputs],
        "opset": opset,
        "tf2onnx": tf2onnx.__version__,
        "seconds": time.perf_counter() - start,
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``scripts/export_onnx``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="export_onnx", description="Convert a spec's TensorFlow model to ONNX.")
    parser.add_argument("spec", help="model spec name or YAML path (format: %s)" % ", ".join(EXPORTABLE_FORMATS))
    parser.add_argument("out", type=Path, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %d)" % DEFAULT_OPSET)
    args = parser.parse_args(argv)
    try:
        made = export_onnx(args.spec, args.out, args.opset)
    except DlVisionError as err:
        print("export_onnx: error: %s" % err, file=sys.stderr)
        return 2
    print(
        "export_onnx: wrote %s (opset %d, %.1f MB, %.0f s): inputs %s, outputs %s; run it with a copy of the spec "
        "saying format: onnx and file: %s"
        % (
            made["path"],
            made["opset"],
            os.path.getsize(made["path"]) / 1e6,
            made["seconds"],
            ", ".join(made["inputs"]),
            ", ".join(made["outputs"]),
            made["path"],
        )
    )
    return 0
