"""``infer``: run a model spec on image files without ROS.

Prints one JSON object per image on stdout (JSON Lines) and writes the
annotated image as ``<stem>.annotated.png`` beside the input (or in
``--out-dir``)::

    rosrun dl_vision infer photo.png                  # COCO objects (spec coco)
    rosrun dl_vision infer --model face photo.png
    rosrun dl_vision infer --model person_pose astronaut  # a cascade: people with 17 keypoints each
    rosrun dl_vision infer --model person_segmentation astronaut --out-dir /tmp

A sample image name (``astronaut``, ``coffee``, ... see :mod:`dl_vision.assets`)
may stand in for a path; its annotated image goes to the current directory
unless ``--out-dir`` says otherwise. A user's error (a bad spec, a damaged model file, an
image that does not decode) is one ``error: ...`` line on stderr and exit status 2, like every
command-line tool of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np

from dl_vision import assets
from dl_vision.errors import DlVisionError, ImageConversionError
from dl_vision.frame_processor import FrameProcessor, Outputs
from dl_vision.pipeline import Detector, Segmenter
from dl_vision.spec import load_spec
from dl_vision.structures import Detections, Segmentation, class_name

EXIT_ERROR = 2


def resolve_image(name: str) -> Path:
    """The file for an image argument: an existing path, else a sample image name.

    Raises:
        ImageConversionError: neither a file nor a sample name.
    """
    path = Path(name)
    if os.path.isfile(path):  # os.path: False, not OSError, for a name too long
        return path
    if name in assets.SAMPLE_IMAGES:
        return assets.fetch(name)
    raise ImageConversionError(
        "image %s: expected an image file or a sample name (%s), found neither"
        % (name, ", ".join(assets.SAMPLE_IMAGES))
    )


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR pixels of an image file.

    Raises:
        ImageConversionError: OpenCV cannot decode it.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageConversionError("image %s: expected a file OpenCV can decode (PNG, JPEG, ...), found none" % path)
    return image


def annotated_path(image_arg: str, image_path: Path, out_dir: Optional[Path]) -> Path:
    """Where the annotated image goes: ``--out-dir``, else beside the input (cwd for sample names)."""
    beside = Path.cwd() if image_path != Path(image_arg) else image_path.parent
    return (out_dir or beside) / (image_path.stem + ".annotated.png")


def detections_record(detections: Detections) -> List[Dict[str, Any]]:
    """JSON-ready list of detections: label, class id, score, box (xyxy pixels), then, for those that
    have them, keypoints with their scores and the pixel count of a non-empty instance mask."""
    records = []
    has_keypoints = detections.has_keypoints
    for i in range(len(detections)):
        record: Dict[str, Any] = {
            "label": class_name(detections.labels, int(detections.class_id[i])),
            "class_id": int(detections.class_id[i]),
            "score": round(float(detections.score[i]), 4),
            "box_xyxy": [round(float(v), 1) for v in detections.xyxy[i]],
        }
        if has_keypoints[i]:
            record["keypoints_xy"] = [[round(float(x), 1), round(float(y), 1)] for x, y in detections.keypoints[i]]
            if detections.keypoint_scores is not None:
                record["keypoint_scores"] = [round(float(v), 3) for v in detections.keypoint_scores[i]]
        pixels = 0 if detections.masks is None else int(np.count_nonzero(detections.masks[i]))
        if pixels:
            record["mask_pixels"] = pixels
        records.append(record)
    return records


def segmentation_record(segmentation: Segmentation) -> Dict[str, float]:
    """Fraction of the image's pixels in each class, by class name (classes present only)."""
    ids, counts = np.unique(segmentation.class_map, return_counts=True)
    total = float(segmentation.class_map.size)
    return {class_name(segmentation.labels, int(i)): round(c / total, 4) for i, c in zip(ids, counts)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infer",
        description="Run a detection, segmentation or cascade model spec on image files; JSON Lines on stdout.",
    )
    parser.add_argument("images", nargs="+", help="image files, or sample names (%s)" % ", ".join(assets.SAMPLE_IMAGES))
    parser.add_argument("--model", default="coco", help="model spec name or YAML path (default: coco)")
    parser.add_argument("--out-dir", type=Path, help="write annotated images here instead of beside the inputs")
    parser.add_argument("--score", type=float, help="detection score threshold (default: the spec's)")
    parser.add_argument("--mask-threshold", type=float, help="segmentation foreground threshold (default: the spec's)")
    parser.add_argument("--threads", type=int, help="inference threads (TFLite), overriding the spec's runtime")
    parser.add_argument("--no-annotate", action="store_true", help="do not write annotated images")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the command; raises :class:`DlVisionError` on a user's mistake."""
    spec = load_spec(args.model)
    overrides = {} if args.threads is None else {"threads": args.threads}
    detecting = spec.task != "segmentation"  # a cascade runs as a detector: its detections carry the results
    model = Detector.from_spec(spec, **overrides) if detecting else Segmenter.from_spec(spec, **overrides)
    if args.score is not None:
        model.options.score_threshold = args.score
    if args.mask_threshold is not None:
        model.options.mask_threshold = args.mask_threshold
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    processor = FrameProcessor(model) if detecting else FrameProcessor(None, model)
    outputs = Outputs(class_map=not detecting, annotated=not args.no_annotate)
    for name in args.images:
        path = resolve_image(name)
        (result,) = processor.process([read_image(path)], outputs)
        record: Dict[str, Any] = {
            "image": str(path),
            "model": spec.name,
            "width": result.width,
            "height": result.height,
        }
        if detecting:
            record["detections"] = detections_record(result.detections)
            if result.detections.keypoint_schema is not None:
                record["keypoint_names"] = list(result.detections.keypoint_schema.names)
        else:
            record["class_fractions"] = segmentation_record(result.segmentation)
        record["timings_ms"] = {stage: round(ms, 3) for stage, ms in processor.timings.items()}
        if not args.no_annotate:
            target = annotated_path(name, path, args.out_dir)
            if not cv2.imwrite(str(target), result.annotated):
                raise ImageConversionError(
                    "annotated image %s: expected a writable path, found it not written" % target
                )
            record["annotated"] = str(target)
        print(json.dumps(record), flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``scripts/infer``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return EXIT_ERROR
