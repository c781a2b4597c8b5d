"""Keypoint accuracy: PCK (Percentage of Correct Keypoints) and COCO's OKS average precision.

A predicted keypoint is correct when it lies within ``alpha * scale`` pixels of its reference,
where ``scale`` is a size of the person: here the diagonal of the reference person box, so
``alpha = 0.2`` allows a fifth of the person's diagonal (PCK@0.2, as in the MPII and LSP
benchmarks' box-normalised variants). :class:`KeypointAccumulator` scores whole evaluations:
PCK over every labelled reference keypoint, and OKS AP through pycocotools.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dl_vision.errors import EvaluationError
from dl_vision.geometry import box_iou, xyxy_to_xywh
from dl_vision.structures import Detections


def box_diagonal(xyxy: np.ndarray) -> float:
    """Length in pixels of the diagonal of one ``x_min, y_min, x_max, y_max`` box."""
    x0, y0, x1, y1 = np.asarray(xyxy, np.float64).reshape(4)
    return float(np.hypot(x1 - x0, y1 - y0))


def pck(predicted: np.ndarray, reference: np.ndarray, scale: float, alpha: float = 0.2) -> float:
    """The fraction of reference keypoints predicted within ``alpha * scale`` pixels.

    Args:
        predicted: (K, 2) float ``(x, y)`` pixels, in the reference's keypoint order.
        reference: (K, 2) float ``(x, y)`` pixels of the same keypoints.
        scale: the person's size in pixels (e.g. :func:`box_diagonal` of its box).
        alpha: the tolerance as a fraction of ``scale``.

    Returns:
        PCK in [0, 1].

    Raises:
        EvaluationError: mismatched or empty keypoint arrays, or a non-positive scale or alpha.
    """
    predicted = np.asarray(predicted, np.float64)
    reference = np.asarray(reference, np.float64)
    if reference.ndim != 2 or reference.shape[1] != 2 or reference.shape[0] == 0:
        raise EvaluationError("pck: expected (K, 2) reference keypoints, found shape %s" % (reference.shape,))
    if predicted.shape != reference.shape:
        raise EvaluationError(
            "pck: expected predictions of the reference's shape %s, found %s" % (reference.shape, predicted.shape)
        )
    if not scale > 0 or not alpha > 0:
        raise EvaluationError("pck: expected a positive scale and alpha, found %r and %r" % (scale, alpha))
    distances = np.hypot(*(predicted - reference).T)
    return float(np.mean(distances <= alpha * scale))


#: COCO's 17 person keypoints and the per-keypoint OKS constants (sigma) of its keypoint benchmark.
COCO_KEYPOINT_SIGMAS: Dict[str, float] = {
    "nose": 0.026,
    "left_eye": 0.025,
    "right_eye": 0.025,
    "left_ear": 0.035,
    "right_ear": 0.035,
    "left_shoulder": 0.079,
    "right_shoulder": 0.079,
    "left_elbow": 0.072,
    "right_elbow": 0.072,
    "left_wrist": 0.062,
    "right_wrist": 0.062,
    "left_hip": 0.107,
    "right_hip": 0.107,
    "left_knee": 0.087,
    "right_knee": 0.087,
    "left_ankle": 0.089,
    "right_ankle": 0.089,
}
#: Tolerances (fractions of the reference box diagonal) PCK is reported at.
PCK_ALPHAS = (0.05, 0.1, 0.2)
#: Box IoU a predicted object needs to be paired with a reference object for PCK.
PCK_MATCH_IOU = 0.5
#: Names of ``COCOeval.stats`` for keypoints (pycocotools' order).
OKS_STAT_NAMES = ("AP", "AP50", "AP75", "AP_medium", "AP_large", "AR", "AR50", "AR75", "AR_medium", "AR_large")


class KeypointAccumulator:
    """Keypoint accuracy over many frames: PCK and COCO's OKS average precision.

    Reference objects are those of ``class_name`` with at least one labelled keypoint (visibility
    > 0); predictions are the detections of that class that carry keypoints. PCK pairs each
    reference, in order, with the unpaired prediction of highest box IoU (at least
    :data:`PCK_MATCH_IOU`); a reference without a partner has all its labelled keypoints
    wrong. OKS AP is pycocotools' ``COCOeval`` (``iouType="keypoints"``) with COCO's sigmas; it is
    defined when every reference keypoint name is one of COCO's 17, and the object area it
    normalises by is the reference mask's when there is one, else its box's (COCO uses the mask's,
    about half the box for a person: box areas make OKS more lenient).

    Args:
        class_name: the class whose keypoints are scored (``person``).
        keypoint_names: the reference's K keypoint names, in its order.
    """

    def __init__(self, class_name: str, keypoint_names: Sequence[str]) -> None:
        if not keypoint_names:
            raise EvaluationError("keypoint metrics: expected the reference's keypoint names, found none")
        self.class_name = class_name
        self.keypoint_names = list(keypoint_names)
        self.normalised_distances: List[np.ndarray] = []  # per reference object: (labelled,) distance / diagonal
        self.labelled_names: List[List[str]] = []
        self.images: List[dict] = []
        self.gt: List[dict] = []
        self.dt: List[dict] = []

    def add(
        self,
        width: int,
        height: int,
        gt_boxes: np.ndarray,
        gt_keypoints: np.ndarray,
        predictions: Detections,
        gt_areas: Optional[np.ndarray] = None,
        gt_iscrowd: Optional[np.ndarray] = None,
    ) -> None:
        """Add one frame.

        Args:
            width, height: image size in pixels.
            gt_boxes: (G, 4) xyxy pixels of the reference objects of ``class_name``.
            gt_keypoints: (G, K, 3) ``(x, y, visibility)`` in the reference's keypoint order. Objects
                without a labelled keypoint are not scored, and a pose predicted on one is ignored
                (COCO's rule), not a false positive.
            predictions: the frame's detections (other classes and those without keypoints are left out).
            gt_areas: (G,) reference object areas in pixels (mask areas), or None for box areas.
            gt_iscrowd: (G,) crowd flags (never scored; poses on them are ignored).

        Raises:
            EvaluationError: predicted keypoints that cannot be put in the reference's order.
        """
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gt_keypoints = np.asarray(gt_keypoints, np.float64).reshape(len(gt_boxes), len(self.keypoint_names), 3)
        crowd = np.zeros(len(gt_boxes), bool) if gt_iscrowd is None else np.asarray(gt_iscrowd, bool)
        areas = _areas(gt_boxes) if gt_areas is None else np.asarray(gt_areas, np.float64)
        chosen = np.array([n == self.class_name for n in predictions.class_names], bool).reshape(-1)
        predictions = predictions[chosen & predictions.has_keypoints]
        predicted = self._in_reference_order(predictions)
        scored = (gt_keypoints[:, :, 2] > 0).any(axis=1) & ~crowd
        self._add_pck(gt_boxes[scored], gt_keypoints[scored], predictions, predicted)
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "width": int(width), "height": int(height)})
        for box, points, area, is_crowd in zip(xyxy_to_xywh(gt_boxes), gt_keypoints, areas, crowd):
            self.gt.append(
                {
                    "id": len(self.gt) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": int(is_crowd),
                    "bbox": [float(v) for v in box],
                    "area": float(area),
                    "keypoints": [float(v) for v in points.reshape(-1)],
                    "num_keypoints": int((points[:, 2] > 0).sum()),
                }
            )
        for box, points, score in zip(xyxy_to_xywh(predictions.xyxy), predicted, predictions.score):
            flat = np.concatenate([points, np.ones((len(points), 1))], axis=1).reshape(-1)
            self.dt.append(
                {
                    "id": len(self.dt) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "score": float(score),
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "keypoints": [float(v) for v in flat],
                }
            )

    def _in_reference_order(self, predictions: Detections) -> np.ndarray:
        """(P, K, 2) predicted keypoints in the reference's order (by name; by position when unnamed)."""
        count = len(self.keypoint_names)
        if predictions.keypoints is None:
            return np.zeros((0, count, 2))
        schema = predictions.keypoint_schema
        if schema is None:
            if predictions.keypoints.shape[1] != count:
                raise EvaluationError(
                    "keypoint metrics: expected %d unnamed predicted keypoints (the reference's %s), found %d"
                    % (count, self.keypoint_names, predictions.keypoints.shape[1])
                )
            return predictions.keypoints.astype(np.float64)
        missing = [n for n in self.keypoint_names if n not in schema.names]
        if missing:
            raise EvaluationError(
                "keypoint metrics: the reference names keypoints %s that the model (%s) does not give"
                % (missing, ", ".join(schema.names))
            )
        order = [schema.names.index(n) for n in self.keypoint_names]
        return predictions.keypoints[:, order].astype(np.float64)

    def _add_pck(self, gt_boxes: np.ndarray, gt_keypoints: np.ndarray, predictions: Detections, predicted) -> None:
        ious = box_iou(gt_boxes, predictions.xyxy.astype(np.float64)) if len(predictions) else None
        taken = set()
        for g in range(len(gt_boxes)):
            labelled = gt_keypoints[g, :, 2] > 0
            distances = np.full(int(labelled.sum()), np.inf)
            if ious is not None:
                candidates = [p for p in np.argsort(-ious[g], kind="stable") if p not in taken]
                if candidates and ious[g, candidates[0]] >= PCK_MATCH_IOU:
                    p = int(candidates[0])
                    taken.add(p)
                    offsets = predicted[p][labelled] - gt_keypoints[g, labelled, :2]
                    distances = np.hypot(offsets[:, 0], offsets[:, 1]) / box_diagonal(gt_boxes[g])
            self.normalised_distances.append(distances)
            self.labelled_names.append([n for n, on in zip(self.keypoint_names, labelled) if on])

    def result(self) -> Dict[str, Any]:
        """Keypoint metrics as a JSON-ready dict.

        Returns:
            ``{"class", "keypoint_names", "objects", "keypoints", "predictions", "pck": {alpha: value},
            "per_keypoint_pck@0.2": {name: value}, "oks": {AP, AP50, ...} or None}``.

        Raises:
            EvaluationError: no reference object had a labelled keypoint.
        """
        if not self.normalised_distances:
            raise EvaluationError(
                "keypoint metrics: no %s in the ground truth has a labelled keypoint" % self.class_name
            )
        distances = np.concatenate(self.normalised_distances)
        names = [n for labelled in self.labelled_names for n in labelled]
        per_keypoint = {
            name: float(np.mean(distances[[n == name for n in names]] <= 0.2)) for name in dict.fromkeys(names)
        }
        return {
            "class": self.class_name,
            "keypoint_names": self.keypoint_names,
            "objects": len(self.normalised_distances),
            "keypoints": int(distances.size),
            "predictions": len(self.dt),
            "pck": {"%g" % alpha: float(np.mean(distances <= alpha)) for alpha in PCK_ALPHAS},
            "per_keypoint_pck@0.2": per_keypoint,
            "oks": self._oks(),
        }

    def _oks(self) -> Optional[Dict[str, Optional[float]]]:
        if not all(n in COCO_KEYPOINT_SIGMAS for n in self.keypoint_names):
            return None

        def coco(anns: List[dict]) -> COCO:
            made = COCO()
            made.dataset = {
                "images": self.images,
                "categories": [{"id": 1, "name": self.class_name, "keypoints": self.keypoint_names}],
                "annotations": anns,
            }
            with contextlib.redirect_stdout(io.StringIO()):
                made.createIndex()
            return made

        evaluator = COCOeval(coco(self.gt), coco(self.dt), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.array([COCO_KEYPOINT_SIGMAS[n] for n in self.keypoint_names])
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return {name: (None if v < 0 else float(v)) for name, v in zip(OKS_STAT_NAMES, evaluator.stats)}


def _areas(xyxy: np.ndarray) -> np.ndarray:
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
