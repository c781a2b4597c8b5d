"""Agreement of a candidate model with a reference model: the accuracy gate of an engine against its source.

A TensorRT engine (FP16, INT8) or any other conversion should predict what its source model
predicts. With no hand labels needed, the reference model's predictions on a set of frames are
taken as the ground truth and the candidate is scored against them with the COCO metrics of
:mod:`dl_vision.evaluation.coco_metrics` (mAP over IoU 0.50:0.95, AP50), plus two plain numbers:
the largest box drift (the largest coordinate difference, in pixels, between a reference box and
the candidate box matched to it at IoU >= 0.5, same class) and the mask IoU of matched instance
masks. Segmenters are scored by the mean IoU and pixel agreement of the candidate's class maps
against the reference's.

``build_engine --check`` refuses to write an engine whose agreement is below the floor of its
precision (:data:`FLOORS`); ``evaluate agreement`` prints and writes the same report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.coco_metrics import CocoAccumulator
from dl_vision.evaluation.confusion import box_iou, match_greedy
from dl_vision.evaluation.segmentation_metrics import SegmentationAccumulator
from dl_vision.structures import Detections, Segmentation

#: Default floors of the gated metric (AP50 for detectors, mean IoU for segmenters) per precision.
FLOORS = {"fp32": 0.99, "fp16": 0.95, "int8": 0.90}

#: IoU at which a candidate box counts as the same object as a reference box (drift, mask IoU).
MATCH_IOU = 0.5


class DetectionAgreement:
    """Accumulates a candidate detector's agreement with a reference detector, frame by frame.

    Args:
        class_names: the classes both models share (the reference's label names).
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self._index = {name: i for i, name in enumerate(self.class_names)}
        self._coco: Optional[CocoAccumulator] = None
        self.frames = 0
        self.reference_objects = 0
        self.candidate_objects = 0
        self.matched = 0
        self.drifts: List[float] = []
        self.mask_ious: List[float] = []

    def _classes(self, dets: Detections, role: str) -> np.ndarray:
        unknown = [n for n in dets.class_names if n not in self._index]
        if unknown:
            raise EvaluationError(
                "agreement: the %s predicted class %r, expected one of the reference's %s"
                % (role, unknown[0], self.class_names)
            )
        return np.array([self._index[n] for n in dets.class_names], np.int64)

    def add(self, width: int, height: int, reference: Detections, candidate: Detections) -> None:
        """Add one frame's predictions (boxes in the frame's pixels)."""
        ref_classes = self._classes(reference, "reference")
        cand_classes = self._classes(candidate, "candidate")
        if self._coco is None:
            self._coco = CocoAccumulator(self.class_names, masks=reference.masks is not None)
        masks = self._coco.masks
        self._coco.add(
            width,
            height,
            reference.xyxy,
            ref_classes,
            candidate.xyxy,
            cand_classes,
            candidate.score,
            gt_masks=_frame_masks(reference, height, width, "reference") if masks else None,
            pred_masks=_frame_masks(candidate, height, width, "candidate") if masks else None,
        )
        self.frames += 1
        self.reference_objects += len(reference)
        self.candidate_objects += len(candidate)
        iou = box_iou(reference.xyxy, candidate.xyxy)
        iou[ref_classes[:, None] != cand_classes[None, :]] = 0.0
        for r, c in match_greedy(iou, MATCH_IOU):
            self.matched += 1
            self.drifts.append(float(np.max(np.abs(reference.xyxy[r].astype(np.float64) - candidate.xyxy[c]))))
            if masks and candidate.masks is not None:
                self.mask_ious.append(_mask_iou(reference.masks[r], candidate.masks[c]))

    def result(self) -> Dict[str, Any]:
        """The agreement as a JSON-ready dict.

        Returns:
            ``frames``, ``reference_objects``, ``candidate_objects``, ``matched`` (pairs at IoU >= 0.5),
            ``mAP``, ``AP50`` (candidate against the reference's boxes), ``max_box_drift_px``,
            ``mean_box_drift_px`` (None without a match), ``mask_iou_mean``/``mask_iou_min`` (None
            without masks), ``coco`` (the full COCO block).

        Raises:
            EvaluationError: no frame, or the reference found no object at all (nothing to agree on).
        """
        if self._coco is None or self.reference_objects == 0:
            raise EvaluationError(
                "agreement: the reference model found no object in %d frames: nothing to compare; "
                "use frames with objects the model detects" % self.frames
            )
        coco = self._coco.result()
        return {
            "frames": self.frames,
            "reference_objects": self.reference_objects,
            "candidate_objects": self.candidate_objects,
            "matched": self.matched,
            "mAP": coco["bbox"]["mAP"],
            "AP50": coco["bbox"]["AP50"],
            "mask_mAP": coco["segm"]["mAP"] if "segm" in coco else None,
            "max_box_drift_px": max(self.drifts) if self.drifts else None,
            "mean_box_drift_px": float(np.mean(self.drifts)) if self.drifts else None,
            "mask_iou_mean": float(np.mean(self.mask_ious)) if self.mask_ious else None,
            "mask_iou_min": float(np.min(self.mask_ious)) if self.mask_ious else None,
            "coco": coco,
        }


def _frame_masks(dets: Detections, height: int, width: int, role: str) -> np.ndarray:
    """One frame's (N, H, W) instance masks once masks are scored; a frame without detections has none.

    Raises:
        EvaluationError: detections without masks.
    """
    if dets.masks is not None:
        return dets.masks
    if not len(dets):
        return np.zeros((0, height, width), bool)
    raise EvaluationError("agreement: the %s gave instance masks on the first frame, none on a later one" % role)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


class SegmentationAgreement:
    """Accumulates a candidate segmenter's agreement with a reference segmenter (class maps).

    Args:
        labels: ``{class id: name}`` of the reference.
    """

    def __init__(self, labels: Dict[int, str]) -> None:
        self._metrics = SegmentationAccumulator(max(labels) + 1 if labels else 256, labels)

    def add(self, reference: Segmentation, candidate: Segmentation) -> None:
        self._metrics.add(reference.class_map, candidate.class_map)

    def result(self) -> Dict[str, Any]:
        """``frames``, ``mean_iou`` (candidate maps against the reference's), ``pixel_agreement``, ``per_class_iou``."""
        metrics = self._metrics.result()
        return {
            "frames": metrics["frames"],
            "mean_iou": metrics["mean_iou"],
            "pixel_agreement": metrics["pixel_accuracy"],
            "per_class_iou": metrics["per_class_iou"],
        }


def gated_metric(report: Dict[str, Any]) -> Tuple[str, Optional[float]]:
    """The metric a floor applies to: ``("AP50", value)`` for detectors, ``("mean_iou", value)`` for segmenters."""
    name = "AP50" if report["task"] == "detection" else "mean_iou"
    return name, report["agreement"][name]


def score_agreement(candidate: Any, reference: Any, images: Iterable[Tuple[str, np.ndarray]]) -> Dict[str, Any]:
    """Run both models on every image and score the candidate against the reference.

    Args:
        candidate, reference: two :class:`~dl_vision.pipeline.Detector` (or two ``Segmenter``).
        images: ``(name, BGR uint8 image)`` pairs (see :func:`dl_vision.image_sources.iter_images`).

    Returns:
        ``{"task", "candidate", "reference", "agreement": {...}, "inference_ms": {...}}`` where
        ``candidate``/``reference`` name the spec and where it ran (backend ``provider``), and
        ``inference_ms`` holds each model's median inference stage time.

    Raises:
        EvaluationError: the models' tasks differ, no image was given, or nothing could be compared.
    """
    if candidate.task != reference.task:
        raise EvaluationError(
            "agreement: expected two models of one task, found a %s candidate and a %s reference"
            % (candidate.task, reference.task)
        )
    if candidate.task == "detection":
        accumulator: Any = DetectionAgreement([reference.labels[k] for k in sorted(reference.labels)])
    else:
        accumulator = SegmentationAgreement(dict(reference.labels))
    times: Dict[str, List[float]] = {"candidate": [], "reference": []}
    count = 0
    for _, image in images:
        ref = reference(image)
        times["reference"].append(reference.timings["inference"])
        cand = candidate(image)
        times["candidate"].append(candidate.timings["inference"])
        if candidate.task == "detection":
            accumulator.add(image.shape[1], image.shape[0], ref, cand)
        else:
            accumulator.add(ref, cand)
        count += 1
    if count == 0:
        raise EvaluationError("agreement: expected at least one image, found none")
    return {
        "task": candidate.task,
        "candidate": _model_record(candidate),
        "reference": _model_record(reference),
        "agreement": accumulator.result(),
        "inference_ms": {k: float(np.median(v)) for k, v in times.items()},
    }


def _model_record(model: Any) -> Dict[str, str]:
    return {
        "spec": model.spec.name,
        "source": str(model.spec.source),
        "provider": str(getattr(model.backend, "provider", model.backend.runtime)),
    }


def format_agreement(report: Dict[str, Any]) -> str:
    """A few readable lines: the gated metric first, then the rest."""
    a = report["agreement"]
    lines = [
        "candidate  %s on %s" % (report["candidate"]["spec"], report["candidate"]["provider"]),
        "reference  %s on %s" % (report["reference"]["spec"], report["reference"]["provider"]),
    ]
    if report["task"] == "detection":
        lines.append(
            "frames %d, reference objects %d, candidate objects %d, matched %d"
            % (a["frames"], a["reference_objects"], a["candidate_objects"], a["matched"])
        )
        for key in ("AP50", "mAP", "max_box_drift_px", "mean_box_drift_px", "mask_iou_mean", "mask_iou_min"):
            if a.get(key) is not None:
                lines.append("%-18s %.4f" % (key, a[key]))
    else:
        lines.append("frames %d" % a["frames"])
        lines.append("%-18s %.4f" % ("mean_iou", a["mean_iou"]))
        lines.append("%-18s %.4f" % ("pixel_agreement", a["pixel_agreement"]))
    lines.append(
        "inference ms (median): candidate %.2f, reference %.2f"
        % (report["inference_ms"]["candidate"], report["inference_ms"]["reference"])
    )
    return "\n".join(lines)


def write_agreement(report: Dict[str, Any], out: Path) -> Path:
    """Write the report as JSON (the parent directory is created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return out


def add_agreement_arguments(parser: Any) -> None:
    """The ``evaluate agreement`` options on an argparse (sub)parser."""
    parser.add_argument("--candidate", required=True, help="model spec under test (e.g. a TensorRT engine's)")
    parser.add_argument("--reference", required=True, help="model spec taken as the truth (e.g. the ONNX source)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images")
    source.add_argument("--bag", help="ROS 1 bag")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic of the bag")
    parser.add_argument("--limit", type=int, help="at most this many frames")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--floor", type=float, help="exit 1 when AP50 (detectors) or mean IoU (segmenters) is below")


def agreement_main(args: Any) -> int:
    """``evaluate agreement``: exit 0, 1 below ``--floor``, 2 on a user's error (one ``error:`` line)."""
    import sys

    from dl_vision.errors import DlVisionError
    from dl_vision.image_sources import iter_images
    from dl_vision.pipeline import Detector, Segmenter
    from dl_vision.spec import load_spec

    try:
        specs = [load_spec(args.candidate), load_spec(args.reference)]
        models = [(Segmenter if s.task == "segmentation" else Detector).from_spec(s) for s in specs]
        report = score_agreement(models[0], models[1], iter_images(args.images or args.bag, args.topic, args.limit))
        if args.out:
            write_agreement(report, args.out)
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    print(format_agreement(report))
    name, value = gated_metric(report)
    if args.floor is not None and (value is None or value < args.floor):
        print("FAIL %s %.4f < floor %.4f" % (name, value or 0.0, args.floor), file=sys.stderr)
        return 1
    return 0
