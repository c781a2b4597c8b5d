"""The values that flow from decoder to node to message to evaluation.

Coordinate convention (used everywhere in dl_vision): boxes are ``xyxy`` =
``(x_min, y_min, x_max, y_max)`` in pixels of the *input image* (the image the
caller passed in, before any resize or letterbox), float32, x to the right and y
down, with the origin at the top-left corner of the top-left pixel. A box that
covers exactly pixel column 0 spans x in [0, 1). Keypoints use the same frame.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from dl_vision.errors import ConfigError

LabelTable = Dict[int, str]


def make_label_table(labels: Union[None, Sequence[str], Mapping[int, str]]) -> LabelTable:
    """Normalise labels given as a list (index = class id) or a mapping into ``{id: name}``."""
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        return {int(k): str(v) for k, v in labels.items()}
    return {i: str(name) for i, name in enumerate(labels)}


def class_name(labels: Mapping[int, str], class_id: int) -> str:
    """The name of ``class_id``, or its decimal string when the table lacks it."""
    return labels.get(int(class_id), str(int(class_id)))


class Detections:
    """N detections in input-image pixels.

    Attributes:
        xyxy: (N, 4) float32 boxes ``x_min, y_min, x_max, y_max`` in pixels.
        score: (N,) float32 confidences in [0, 1].
        class_id: (N,) int32 class ids (keys of ``labels``).
        labels: ``{class_id: name}`` table of the model that produced them.
        masks: optional (N, H, W) bool instance masks, H x W = input image size.
        keypoints: optional (N, K, 2) float32 ``(x, y)`` pixels.
        keypoint_scores: optional (N, K) float32 confidence of each keypoint in [0, 1]
            (only with ``keypoints``).
    """

    __slots__ = ("xyxy", "score", "class_id", "labels", "masks", "keypoints", "keypoint_scores")

    def __init__(
        self,
        xyxy: np.ndarray,
        score: np.ndarray,
        class_id: np.ndarray,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        masks: Optional[np.ndarray] = None,
        keypoints: Optional[np.ndarray] = None,
        keypoint_scores: Optional[np.ndarray] = None,
    ) -> None:
        xyxy = np.asarray(xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        n = xyxy.shape[0]
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ConfigError("Detections.xyxy: expected shape (N, 4), found %s" % (xyxy.shape,))
        score = np.asarray(score, dtype=np.float32).reshape(-1)
        class_id = np.asarray(class_id).reshape(-1)
        if class_id.size and not np.issubdtype(class_id.dtype, np.integer):
            if not np.all(np.equal(np.mod(class_id, 1), 0)):
                raise ConfigError("Detections.class_id: expected integers, found %s" % class_id.dtype)
        class_id = class_id.astype(np.int32)
        for name, arr in (("score", score), ("class_id", class_id)):
            if arr.shape[0] != n:
                raise ConfigError("Detections.%s: expected %d values (one per box), found %d" % (name, n, arr.shape[0]))
        if masks is not None:
            masks = np.asarray(masks)
            if masks.ndim != 3 or masks.shape[0] != n:
                raise ConfigError("Detections.masks: expected shape (%d, H, W), found %s" % (n, masks.shape))
            masks = masks.astype(bool, copy=False)
        if keypoints is not None:
            keypoints = np.asarray(keypoints, dtype=np.float32)
            if keypoints.ndim != 3 or keypoints.shape[0] != n or keypoints.shape[2] != 2:
                raise ConfigError("Detections.keypoints: expected shape (%d, K, 2), found %s" % (n, keypoints.shape))
        if keypoint_scores is not None:
            keypoint_scores = np.asarray(keypoint_scores, dtype=np.float32)
            if keypoints is None:
                raise ConfigError("Detections.keypoint_scores: expected keypoints beside them, found none")
            if keypoint_scores.shape != keypoints.shape[:2]:
                raise ConfigError(
                    "Detections.keypoint_scores: expected shape %s (one per keypoint), found %s"
                    % (keypoints.shape[:2], keypoint_scores.shape)
                )
        self.xyxy = xyxy
        self.score = score
        self.class_id = class_id
        self.labels = make_label_table(labels)
        self.masks = masks
        self.keypoints = keypoints
        self.keypoint_scores = keypoint_scores

    @classmethod
    def empty(cls, labels: Union[None, Sequence[str], Mapping[int, str]] = None) -> "Detections":
        """A value with no detections (what a frame without objects yields)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), labels)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: Union[np.ndarray, slice, Sequence[int], int]) -> "Detections":
        """Select detections by boolean mask, index array, slice or single index."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.score[index],
            self.class_id[index],
            self.labels,
            None if self.masks is None else self.masks[index],
            None if self.keypoints is None else self.keypoints[index],
            None if self.keypoint_scores is None else self.keypoint_scores[index],
        )

    @property
    def class_names(self) -> List[str]:
        """Class name of each detection (its id as a string when unlabelled)."""
        return [class_name(self.labels, c) for c in self.class_id]

    def filter(self, min_score: float = 0.0, classes: Optional[Iterable[Union[int, str]]] = None) -> "Detections":
        """Keep detections scoring at least ``min_score`` whose class id or name is in ``classes``."""
        keep = self.score >= min_score
        if classes is not None:
            wanted = {str(c) for c in classes}
            if wanted:
                names = self.class_names
                keep &= np.array(
                    [str(int(c)) in wanted or n in wanted for c, n in zip(self.class_id, names)], dtype=bool
                ).reshape(-1)
        return self[keep]

    def __repr__(self) -> str:
        return "Detections(n=%d, classes=%s)" % (len(self), sorted(set(self.class_names)))


class Segmentation:
    """A per-pixel class map of the input image.

    Attributes:
        class_map: (H, W) uint8 class id of every pixel (H x W = input image size).
        labels: ``{class_id: name}`` table; id 0 is conventionally background.
        confidence: optional (H, W) float32 probability of the chosen class.
    """

    __slots__ = ("class_map", "labels", "confidence")

    def __init__(
        self,
        class_map: np.ndarray,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        confidence: Optional[np.ndarray] = None,
    ) -> None:
        class_map = np.asarray(class_map)
        if class_map.ndim != 2:
            raise ConfigError("Segmentation.class_map: expected shape (H, W), found %s" % (class_map.shape,))
        if class_map.dtype != np.uint8:
            if class_map.size and (class_map.min() < 0 or class_map.max() > 255):
                raise ConfigError("Segmentation.class_map: class ids must fit in uint8 (0..255)")
            class_map = class_map.astype(np.uint8)
        if confidence is not None:
            confidence = np.asarray(confidence, dtype=np.float32)
            if confidence.shape != class_map.shape:
                raise ConfigError(
                    "Segmentation.confidence: expected shape %s, found %s" % (class_map.shape, confidence.shape)
                )
        self.class_map = class_map
        self.labels = make_label_table(labels)
        self.confidence = confidence

    @property
    def shape(self):
        """(H, W) of the input image."""
        return self.class_map.shape

    def __repr__(self) -> str:
        present = [class_name(self.labels, c) for c in np.unique(self.class_map)]
        return "Segmentation(shape=%s, classes=%s)" % (self.shape, present)
