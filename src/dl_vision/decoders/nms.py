"""Non-maximum suppression: greedy (class-aware or class-agnostic) and MediaPipe's weighted blend.

Boxes are ``xyxy`` = ``(x_min, y_min, x_max, y_max)`` float arrays in any one
pixel frame (model input or input image; IoU does not care which).

:func:`nms` gives exactly the result of the textbook greedy loop (visit boxes by
descending score; keep one unless a kept box overlaps it by more than the IoU
threshold) without a Python loop over boxes:

1. Overlapping pairs are found with a sweep along x: boxes sorted by ``x_min``
   can only overlap boxes that start before their ``x_max``, so IoU is computed
   in blocks against that short run of neighbours, never as a full N x N matrix.
   Class-aware suppression shifts each class along x by its id times the span of
   all boxes (the "offset trick"), so classes never share a run.
2. The greedy rule ``keep[j] = not any(keep[i] and overlaps(i, j) for i ranked above j)``
   is solved by fixed-point iteration over the pair list (as in Cluster-NMS): the
   rule has one solution, and each pass settles at least one more rank, so it
   stops after as many passes as the longest suppression chain (a handful).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from dl_vision.errors import ConfigError

#: Rows of IoU computed at once in the sweep; bounds memory at BLOCK x (neighbours) floats.
BLOCK = 256


def _as_boxes(name: str, boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ConfigError("%s: expected boxes of shape (N, 4), found %s" % (name, boxes.shape))
    return boxes


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """Areas of (N, 4) ``xyxy`` boxes, (N,) float32; inverted boxes count as 0."""
    xyxy = _as_boxes("box_area", xyxy)
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: (N, 4) ``xyxy`` boxes.
        b: (M, 4) ``xyxy`` boxes, same frame as ``a``.

    Returns:
        (N, M) float32 IoU in [0, 1]; 0 where both boxes are empty.
    """
    a = _as_boxes("box_iou a", a)
    b = _as_boxes("box_iou b", b)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    np.clip(iw, 0, None, out=iw)
    np.clip(ih, 0, None, out=ih)
    inter = np.multiply(iw, ih, out=iw)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _overlapping_pairs(
    boxes: np.ndarray, classes: Optional[np.ndarray], iou_threshold: float
) -> Tuple[np.ndarray, np.ndarray]:
    """All pairs ``(i, j)``, ``i < j``, of the same class whose IoU exceeds the threshold.

    Args:
        boxes: (N, 4) float32 boxes.
        classes: (N,) int class ids, or None to pair across classes.
        iou_threshold: IoU strictly above which a pair counts.

    Returns:
        Two (P,) int64 arrays of row indices into ``boxes``, ``first < second``.
    """
    n = boxes.shape[0]
    # float64 keys: a class shift of up to ~1e7 px would lose sub-pixel precision in float32.
    key_start = boxes[:, 0].astype(np.float64)
    key_end = boxes[:, 2].astype(np.float64)
    if classes is not None:
        span = float(max(boxes[:, 2].max(), boxes[:, 0].max()) - min(boxes[:, 0].min(), boxes[:, 2].min())) + 1.0
        shift = (classes - classes.min()).astype(np.float64) * span
        key_start += shift
        key_end += shift
    sweep = np.argsort(key_start, kind="stable")
    starts = key_start[sweep]
    ends = key_end[sweep]
    sboxes = boxes[sweep]
    sclasses = None if classes is None else classes[sweep]
    firsts, seconds = [], []
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        # Boxes starting at or after the block's furthest x_max cannot intersect any box in it.
        reach = int(np.searchsorted(starts, ends[lo:hi].max(), side="left"))
        if reach <= lo + 1:
            continue
        over = box_iou(sboxes[lo:hi], sboxes[lo:reach]) > iou_threshold
        # Keep each unordered pair once (column after row in sweep order).
        over &= np.arange(lo, reach)[None, :] > np.arange(lo, hi)[:, None]
        if sclasses is not None:
            over &= sclasses[lo:hi, None] == sclasses[None, lo:reach]
        rows, cols = np.nonzero(over)
        firsts.append(sweep[rows + lo])
        seconds.append(sweep[cols + lo])
    if not firsts:
        empty = np.zeros(0, np.int64)
        return empty, empty
    first = np.concatenate(firsts)
    second = np.concatenate(seconds)
    return np.minimum(first, second), np.maximum(first, second)


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: Optional[np.ndarray] = None,
    max_detections: Optional[int] = None,
) -> np.ndarray:
    """Greedy non-maximum suppression.

    A box is dropped when a higher-scored kept box (of the same class, when
    ``class_ids`` is given) overlaps it with IoU strictly above ``iou_threshold``.
    Ties in score keep the earlier index first.

    Args:
        xyxy: (N, 4) boxes ``x_min, y_min, x_max, y_max``.
        scores: (N,) scores.
        iou_threshold: suppression IoU in [0, 1].
        class_ids: (N,) integer classes for class-aware suppression; None
            suppresses across classes (class-agnostic).
        max_detections: keep at most this many (the highest-scored survivors).

    Returns:
        (K,) int64 indices into the inputs of the kept boxes, by descending score.

    Raises:
        ConfigError: shapes disagree or the threshold is outside [0, 1].
    """
    boxes = _as_boxes("nms", xyxy)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n:
        raise ConfigError("nms: expected %d scores (one per box), found %d" % (n, scores.shape[0]))
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ConfigError("nms: expected an IoU threshold in [0, 1], found %r" % (iou_threshold,))
    if class_ids is not None:
        class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64)
        if class_ids.shape[0] != n:
            raise ConfigError("nms: expected %d class ids (one per box), found %d" % (n, class_ids.shape[0]))
    if n == 0:
        return np.zeros(0, np.int64)
    # Work in rank space: row r of the sorted arrays is the r-th highest score.
    order = np.argsort(-scores, kind="stable")
    ranked_classes = None if class_ids is None else class_ids[order]
    stronger, weaker = _overlapping_pairs(boxes[order], ranked_classes, float(iou_threshold))
    keep = np.ones(n, dtype=bool)
    for _ in range(n):
        suppressed = np.zeros(n, dtype=bool)
        suppressed[weaker[keep[stronger]]] = True
        settled = ~suppressed
        if np.array_equal(settled, keep):
            break
        keep = settled
    kept = order[keep]
    if max_detections is not None:
        kept = kept[: max(int(max_detections), 0)]
    return kept.astype(np.int64)


class WeightedNmsResult(NamedTuple):
    """Output of :func:`weighted_nms`, one row per cluster, by descending score.

    Attributes:
        index: (K,) int64 index of each cluster's highest-scored box (e.g. to pick its class).
        xyxy: (K, 4) float32 score-weighted mean box of the cluster.
        score: (K,) float32 score of the cluster's highest-scored box.
        keypoints: (K, P, 2) float32 score-weighted mean keypoints, or None.
    """

    index: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    keypoints: Optional[np.ndarray]


def weighted_nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    keypoints: Optional[np.ndarray] = None,
    class_ids: Optional[np.ndarray] = None,
    max_detections: Optional[int] = None,
) -> WeightedNmsResult:
    """MediaPipe-style weighted NMS: blend each cluster of overlapping boxes by score.

    Repeatedly take the highest-scored remaining box, gather every remaining box
    (of the same class, when ``class_ids`` is given) whose IoU with it exceeds
    ``iou_threshold`` (the box itself included), and replace the cluster by the
    score-weighted mean of its boxes and keypoints, scored with the top box's
    score. Anchor-based face detectors fire on several neighbouring anchors per
    face; averaging them is steadier from frame to frame than keeping one.

    Args:
        xyxy: (N, 4) boxes.
        scores: (N,) non-negative scores.
        iou_threshold: IoU in [0, 1] above which a box joins the cluster.
        keypoints: optional (N, P, 2) keypoints blended with the same weights.
        class_ids: optional (N,) classes; clusters never mix classes.
        max_detections: stop after this many clusters.

    Returns:
        The clusters, by descending score.

    Raises:
        ConfigError: shapes disagree or the threshold is outside [0, 1].
    """
    boxes = _as_boxes("weighted_nms", xyxy)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n:
        raise ConfigError("weighted_nms: expected %d scores (one per box), found %d" % (n, scores.shape[0]))
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ConfigError("weighted_nms: expected an IoU threshold in [0, 1], found %r" % (iou_threshold,))
    if keypoints is not None:
        keypoints = np.asarray(keypoints, dtype=np.float32)
        if keypoints.ndim != 3 or keypoints.shape[0] != n or keypoints.shape[2] != 2:
            raise ConfigError("weighted_nms: expected keypoints of shape (%d, P, 2), found %s" % (n, keypoints.shape))
    if class_ids is not None:
        class_ids = np.asarray(class_ids).reshape(-1)
        if class_ids.shape[0] != n:
            raise ConfigError("weighted_nms: expected %d class ids (one per box), found %d" % (n, class_ids.shape[0]))
    limit = n if max_detections is None else max(int(max_detections), 0)
    remaining = np.argsort(-scores, kind="stable")
    tops, out_boxes, out_scores, out_points = [], [], [], []
    # One pass per output cluster: a handful of faces per frame, so the loop is short.
    while remaining.size and len(tops) < limit:
        top = remaining[0]
        member = box_iou(boxes[top : top + 1], boxes[remaining])[0] > iou_threshold
        member[0] = True  # an empty box has IoU 0 with itself but still forms its own cluster
        if class_ids is not None:
            member &= class_ids[remaining] == class_ids[top]
        cluster = remaining[member]
        weights = scores[cluster].astype(np.float64)
        total = weights.sum()
        if total <= 0:
            weights = np.ones_like(weights)
            total = float(len(weights))
        tops.append(top)
        out_boxes.append((boxes[cluster] * weights[:, None]).sum(axis=0) / total)
        out_scores.append(scores[top])
        if keypoints is not None:
            out_points.append((keypoints[cluster] * weights[:, None, None]).sum(axis=0) / total)
        remaining = remaining[~member]
    k = len(tops)
    return WeightedNmsResult(
        index=np.asarray(tops, dtype=np.int64).reshape(k),
        xyxy=np.asarray(out_boxes, dtype=np.float32).reshape(k, 4),
        score=np.asarray(out_scores, dtype=np.float32).reshape(k),
        keypoints=None
        if keypoints is None
        else np.asarray(out_points, dtype=np.float32).reshape((k,) + keypoints.shape[1:]),
    )
