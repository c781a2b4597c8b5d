"""Detection confusion matrix with a background row and column, and P/R/F1 at one operating point.

At the operating point (a score threshold and an IoU threshold) every frame's predictions are
matched one-to-one to its ground-truth boxes, class-agnostically, greedily by descending IoU.
A matched pair counts in ``matrix[gt_class, predicted_class]`` (off the diagonal when the class
is wrong), an unmatched ground-truth box in ``matrix[gt_class, background]`` (a miss), an
unmatched prediction in ``matrix[background, predicted_class]`` (a false alarm). Rows are
ground truth, columns predictions; the background index is the last one.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from dl_vision.errors import EvaluationError
from dl_vision.geometry import box_iou


def match_greedy(iou: np.ndarray, threshold: float) -> List[tuple]:
    """One-to-one pairs ``(gt_index, pred_index)`` with IoU >= threshold, highest IoU first."""
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_gt, used_pred, pairs = set(), set(), []
    for k in order:
        g, p = int(rows[k]), int(cols[k])
        if g not in used_gt and p not in used_pred:
            used_gt.add(g)
            used_pred.add(p)
            pairs.append((g, p))
    return pairs


class ConfusionAccumulator:
    """Accumulates the detection confusion matrix over frames.

    Args:
        class_names: names of the C evaluated classes; class index i is ``class_names[i]``.
        iou_threshold: minimum IoU for a prediction to match a ground-truth box.
        score_threshold: predictions scoring below it are ignored (the operating threshold).
    """

    def __init__(self, class_names: Sequence[str], iou_threshold: float = 0.5, score_threshold: float = 0.5) -> None:
        self.class_names = list(class_names)
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)
        n = len(self.class_names)
        self.matrix = np.zeros((n + 1, n + 1), np.int64)

    @property
    def background(self) -> int:
        """Index of the background row/column (the last one)."""
        return len(self.class_names)

    def add(
        self,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        pred_boxes: np.ndarray,
        pred_classes: np.ndarray,
        pred_scores: np.ndarray,
    ) -> None:
        """Add one frame.

        Args:
            gt_boxes: (G, 4) xyxy pixels. gt_classes: (G,) class indices into ``class_names``.
            pred_boxes: (P, 4) xyxy pixels. pred_classes: (P,) class indices. pred_scores: (P,).
        """
        gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
        keep = np.asarray(pred_scores).reshape(-1) >= self.score_threshold
        pred_boxes = np.asarray(pred_boxes).reshape(-1, 4)[keep]
        pred_classes = np.asarray(pred_classes, np.int64).reshape(-1)[keep]
        pairs = match_greedy(box_iou(gt_boxes, pred_boxes), self.iou_threshold)
        matched_gt = {g for g, _ in pairs}
        matched_pred = {p for _, p in pairs}
        for g, p in pairs:
            self.matrix[gt_classes[g], pred_classes[p]] += 1
        for g in range(len(gt_classes)):
            if g not in matched_gt:
                self.matrix[gt_classes[g], self.background] += 1
        for p in range(len(pred_classes)):
            if p not in matched_pred:
                self.matrix[self.background, pred_classes[p]] += 1

    def result(self) -> Dict[str, object]:
        """The matrix and per-class precision, recall and F1 as a JSON-ready dict.

        Precision of class c = matrix[c, c] / column c total, recall = matrix[c, c] / row c total
        (both without the background cell of the other axis being special: a miss lowers recall,
        a false alarm lowers precision). A ratio with a zero denominator is ``None``, not 0.

        Raises:
            EvaluationError: nothing was added (neither ground truth nor predictions).
        """
        if self.matrix.sum() == 0:
            raise EvaluationError(
                "confusion matrix: no ground-truth boxes and no predictions above score %.2f" % self.score_threshold
            )
        per_class = {}
        tps = fps = fns = 0
        for c, name in enumerate(self.class_names):
            tp = int(self.matrix[c, c])
            predicted = int(self.matrix[:, c].sum())
            actual = int(self.matrix[c, :].sum())
            precision = tp / predicted if predicted else None
            recall = tp / actual if actual else None
            f1 = None
            if precision is not None and recall is not None:
                f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            per_class[name] = {
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "tp": tp,
                "fp": predicted - tp,
                "fn": actual - tp,
            }
            tps, fps, fns = tps + tp, fps + predicted - tp, fns + actual - tp
        precision = tps / (tps + fps) if tps + fps else None
        recall = tps / (tps + fns) if tps + fns else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
            "labels": self.class_names + ["background"],
            "matrix": self.matrix.tolist(),
            "per_class": per_class,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
