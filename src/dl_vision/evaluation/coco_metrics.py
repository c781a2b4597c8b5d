"""COCO detection metrics (bbox and instance-mask mAP) computed by pycocotools' ``COCOeval``.

Frames are added one by one as numpy arrays; the accumulator keeps only COCO annotation dicts
(boxes, and run-length-encoded masks), so memory grows with the number of objects, not pixels.
COCO itself is not re-implemented here: pycocotools does the matching, the 101-point interpolated
precision and the averaging over IoU thresholds 0.50:0.05:0.95.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dl_vision.errors import EvaluationError
from dl_vision.geometry import xyxy_to_xywh

#: Names of ``COCOeval.stats`` in order (maxDets 1/10/100 as pycocotools defines them).
STAT_NAMES = (
    "mAP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


#: Instance masks: an (N, H, W) bool array, or N COCO RLE dicts from :func:`encode_mask`.
Masks = Union[np.ndarray, Sequence[dict]]


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> COCO RLE with a JSON-ready ``counts`` string."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


class CocoAccumulator:
    """Collects ground truth and predictions of many frames and scores them with COCOeval.

    Args:
        class_names: names of the C evaluated classes; class index i is ``class_names[i]``
            (COCO category id ``i + 1``).
        masks: also compute instance-mask (``segm``) metrics; every frame must then carry
            ground-truth and predicted masks.
    """

    def __init__(self, class_names: Sequence[str], masks: bool = False) -> None:
        if not class_names:
            raise EvaluationError("COCO metrics: expected at least one class name, found none")
        self.class_names = list(class_names)
        self.masks = masks
        self.images: List[dict] = []
        self.gt: Dict[str, List[dict]] = {"bbox": [], "segm": []}
        self.dt: Dict[str, List[dict]] = {"bbox": [], "segm": []}

    def add(
        self,
        width: int,
        height: int,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        pred_boxes: np.ndarray,
        pred_classes: np.ndarray,
        pred_scores: np.ndarray,
        gt_masks: Optional[Masks] = None,
        pred_masks: Optional[Masks] = None,
        gt_iscrowd: Optional[np.ndarray] = None,
    ) -> None:
        """Add one frame.

        Args:
            width, height: image size in pixels.
            gt_boxes: (G, 4) xyxy pixels; gt_classes: (G,) indices into ``class_names``.
            pred_boxes: (P, 4) xyxy pixels; pred_classes: (P,) indices; pred_scores: (P,) in [0, 1].
            gt_masks, pred_masks: (G, H, W) / (P, H, W) bool instance masks, or G / P COCO RLEs
                from :func:`encode_mask` (what workers send back); used when ``masks``.
            gt_iscrowd: (G,) flags of crowd regions (matched but never counted as misses).
        """
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "width": int(width), "height": int(height)})
        gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
        pred_classes = np.asarray(pred_classes, np.int64).reshape(-1)
        pred_scores = np.asarray(pred_scores, np.float64).reshape(-1)
        crowd = np.zeros(len(gt_classes), bool) if gt_iscrowd is None else np.asarray(gt_iscrowd, bool)
        if self.masks and (gt_masks is None or pred_masks is None):
            raise EvaluationError("COCO metrics: mask evaluation needs ground-truth and predicted masks on every frame")
        for i, (box, cls) in enumerate(zip(xyxy_to_xywh(gt_boxes), gt_classes)):
            ann = {"image_id": image_id, "category_id": int(cls) + 1, "iscrowd": int(crowd[i])}
            self._append(self.gt, ann, box, None if gt_masks is None else gt_masks[i])
        for i, (box, cls) in enumerate(zip(xyxy_to_xywh(pred_boxes), pred_classes)):
            ann = {"image_id": image_id, "category_id": int(cls) + 1, "score": float(pred_scores[i])}
            self._append(self.dt, ann, box, None if pred_masks is None else pred_masks[i])

    def _append(self, store: Dict[str, List[dict]], ann: dict, box: np.ndarray, mask: Any) -> None:
        ann_id = len(store["bbox"]) + 1
        bbox = [float(v) for v in box]
        store["bbox"].append(dict(ann, id=ann_id, bbox=bbox, area=bbox[2] * bbox[3]))
        if self.masks and mask is not None:
            rle = mask if isinstance(mask, dict) else encode_mask(mask)
            store["segm"].append(dict(ann, id=ann_id, bbox=bbox, segmentation=rle, area=float(mask_utils.area(rle))))

    def _coco(self, anns: List[dict]) -> COCO:
        coco = COCO()
        coco.dataset = {
            "images": self.images,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
            "annotations": anns,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def _evaluate(self, iou_type: str) -> Dict[str, object]:
        evaluator = COCOeval(self._coco(self.gt[iou_type]), self._coco(self.dt[iou_type]), iou_type)
        # pycocotools reports progress on stdout; the report is ours to print.
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = {name: _none_if_missing(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
        precision = evaluator.eval["precision"]  # [IoU T, recall R, class K, area A, maxDets M]
        recall_points = evaluator.params.recThrs
        per_class, per_class50, curves = {}, {}, {}
        for k, name in enumerate(self.class_names):
            p_all = precision[:, :, k, 0, -1]
            p_50 = precision[0, :, k, 0, -1]
            per_class[name] = float(np.mean(p_all)) if np.all(p_all > -1) else None
            per_class50[name] = float(np.mean(p_50)) if np.all(p_50 > -1) else None
            if per_class50[name] is not None:
                curves[name] = {"recall": [float(r) for r in recall_points], "precision": [float(p) for p in p_50]}
        return dict(stats, per_class_ap=per_class, per_class_ap50=per_class50, pr_curve_iou50=curves)

    def result(self) -> Dict[str, object]:
        """COCO metrics as a JSON-ready dict.

        Returns:
            ``{"images", "ground_truth_objects", "predictions", "bbox": {...}, "segm": {...}}``
            where each metric block has ``mAP`` (AP@[.50:.95]), ``AP50``, ``AP75``, small/medium/
            large AP, AR@1/10/100, ``per_class_ap`` and ``per_class_ap50`` (``None`` for a class
            without ground truth) and ``pr_curve_iou50`` (101 recall points). A metric that COCO
            cannot define (no ground truth in its area range) is ``None``.

        Raises:
            EvaluationError: no frame or no ground-truth object was added.
        """
        if not self.images:
            raise EvaluationError("COCO metrics: no frame was evaluated (no ground truth matched a frame)")
        if not self.gt["bbox"]:
            raise EvaluationError(
                "COCO metrics: the %d evaluated frames hold no ground-truth object; AP is undefined" % len(self.images)
            )
        out = {
            "images": len(self.images),
            "ground_truth_objects": len(self.gt["bbox"]),
            "predictions": len(self.dt["bbox"]),
            "bbox": self._evaluate("bbox"),
        }
        if self.masks:
            out["segm"] = self._evaluate("segm")
        return out


def _none_if_missing(value: float) -> Optional[float]:
    """COCOeval writes -1 for an undefined metric; JSON gets ``None`` instead of a fake number."""
    return None if value < 0 else float(value)
