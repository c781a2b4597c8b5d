"""Semantic-segmentation metrics accumulated over frames: mIoU, per-class IoU, pixel accuracy.

Everything is derived from one (C, C) confusion matrix of pixel counts (rows = ground-truth
class, columns = predicted class) that grows by ``np.bincount`` per frame, so memory does not
depend on the number of frames.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from dl_vision.errors import EvaluationError
from dl_vision.structures import class_name

#: Ground-truth pixels with this value are not scored (the usual "void" label of mono8 masks).
IGNORE_INDEX = 255


class SegmentationAccumulator:
    """Accumulates pixel confusion counts of class maps.

    Args:
        num_classes: C, the number of class ids (ids 0..C-1); ids outside that range in a
            prediction or ground truth raise :class:`EvaluationError` (besides ``ignore_index``
            in the ground truth).
        labels: ``{class_id: name}`` used in the result.
        ignore_index: ground-truth value excluded from every count.
    """

    def __init__(
        self, num_classes: int, labels: Optional[Mapping[int, str]] = None, ignore_index: int = IGNORE_INDEX
    ) -> None:
        if num_classes < 1:
            raise EvaluationError("segmentation: expected at least 1 class, found %d" % num_classes)
        self.num_classes = int(num_classes)
        self.labels = dict(labels or {})
        self.ignore_index = ignore_index
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.frames = 0

    def add(self, ground_truth: np.ndarray, prediction: np.ndarray) -> None:
        """Add one frame.

        Args:
            ground_truth: (H, W) integer class map (uint8), ``ignore_index`` marks void pixels.
            prediction: (H, W) integer class map of the same shape.
        """
        gt = np.asarray(ground_truth).reshape(-1).astype(np.int64)
        pred = np.asarray(prediction).reshape(-1).astype(np.int64)
        if np.shape(ground_truth) != np.shape(prediction):
            raise EvaluationError(
                "segmentation: ground-truth mask %s and prediction %s differ in shape"
                % (np.shape(ground_truth), np.shape(prediction))
            )
        keep = gt != self.ignore_index
        gt, pred = gt[keep], pred[keep]
        for name, arr in (("ground truth", gt), ("prediction", pred)):
            if arr.size and (arr.min() < 0 or arr.max() >= self.num_classes):
                raise EvaluationError(
                    "segmentation: %s class ids must be in 0..%d, found %d..%d"
                    % (name, self.num_classes - 1, arr.min(), arr.max())
                )
        self.confusion += np.bincount(gt * self.num_classes + pred, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )
        self.frames += 1

    def merge(self, other: "SegmentationAccumulator") -> None:
        """Add the pixel counts of another accumulator (e.g. a worker's, over other frames).

        Raises:
            EvaluationError: the two count different classes or ignore another value.
        """
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise EvaluationError(
                "segmentation: cannot merge counts of %d classes (ignore %d) into %d classes (ignore %d)"
                % (other.num_classes, other.ignore_index, self.num_classes, self.ignore_index)
            )
        self.confusion += other.confusion
        self.frames += other.frames

    def result(self) -> Dict[str, object]:
        """The metrics as a JSON-ready dict.

        Returns:
            ``frames``, ``pixels``, ``pixel_accuracy``, ``mean_iou`` (over classes present in the
            ground truth or the predictions; a class absent from both has no IoU and is left out),
            ``per_class_iou`` ``{name: IoU or None}``, ``confusion`` (C x C pixel counts).

        Raises:
            EvaluationError: no frame or no scored pixel was added (a 0 would be meaningless).
        """
        total = int(self.confusion.sum())
        if self.frames == 0 or total == 0:
            raise EvaluationError("segmentation: no ground-truth pixels were scored (%d frames added)" % self.frames)
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        per_class = {}
        ious = []
        for c in range(self.num_classes):
            iou = None if union[c] == 0 else float(tp[c] / union[c])
            per_class[class_name(self.labels, c)] = iou
            if iou is not None:
                ious.append(iou)
        return {
            "frames": self.frames,
            "pixels": total,
            "pixel_accuracy": float(tp.sum() / total),
            "mean_iou": float(np.mean(ious)),
            "per_class_iou": per_class,
            "confusion": self.confusion.tolist(),
            "class_names": [class_name(self.labels, c) for c in range(self.num_classes)],
        }
