"""Non-maximum suppression: greedy (class-aware or class-agnostic) and MediaPipe's weighted blend.

Boxes are ``xyxy`` = ``(x_min, y_min, x_max, y_max)`` float arrays in any one
pixel frame (model input or input image; IoU does not care which).

:func:`nms` gives exactly the result of the textbook greedy loop (visit boxes by
descending score; keep one unless a kept box overlaps it by more than the IoU
threshold) without a Python loop over boxes:

boxes are taken in blocks of :data:`BLOCK` by descending score; a block is first
checked against every box kept so far (one IoU matrix), then the greedy rule
``keep[j] = not any(keep[i] and overlaps(i, j) for i ranked above j)`` is solved
inside the block by fixed-point iteration (as in Cluster-NMS). Work grows with
candidates x kept boxes, and stops as soon as ``max_detections`` are kept.
Class-aware suppression solves each class on its own. OpenCV's ``cv2.dnn.NMSBoxes``
was measured against this and is not used (``docs/model_formats.md``, NMS).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import numpy as np

from dl_vision.errors import ConfigError
from dl_vision.geometry import as_boxes, box_iou

#: Candidates resolved together in :func:`nms`; bounds memory at BLOCK x (BLOCK + kept) floats.
BLOCK = 256


def _greedy_ranked(boxes: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy NMS of boxes already sorted by descending score, at most ``limit`` kept.

    Args:
        boxes: (N, 4) boxes, best first.
        iou_threshold: IoU strictly above which the weaker box is dropped.
        limit: stop once this many boxes are kept.

    Returns:
        (K,) int64 ranks (row indices) of the kept boxes, ascending.
    """
    n = boxes.shape[0]
    kept: List[np.ndarray] = []
    kept_boxes = boxes[:0]
    count = 0
    for lo in range(0, n, BLOCK):
        if count >= limit:
            break
        block = boxes[lo : lo + BLOCK]
        alive = np.ones(block.shape[0], dtype=bool)
        if count:
            alive = box_iou(block, kept_boxes).max(axis=1) <= iou_threshold
        ranks = np.nonzero(alive)[0]
        if ranks.size == 0:
            continue
        # Inside the block, keep[j] = not any(keep[i] and overlaps(i, j) for i ranked above j).
        # The rule has one solution; each pass settles at least the next rank (Cluster-NMS),
        # so the loop ends after as many passes as the longest suppression chain.
        overlaps = np.triu(box_iou(block[ranks], block[ranks]) > iou_threshold, k=1)
        keep = np.ones(ranks.size, dtype=bool)
        for _ in range(ranks.size):
            settled = ~(overlaps & keep[:, None]).any(axis=0)
            if np.array_equal(settled, keep):
                break
            keep = settled
        new = ranks[keep][: limit - count] + lo
        kept.append(new)
        kept_boxes = np.concatenate([kept_boxes, boxes[new]])
        count += new.size
    return np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)


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
    boxes = as_boxes("nms", xyxy, np.float32)
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
    limit = n if max_detections is None else max(int(max_detections), 0)
    if n == 0 or limit == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    if class_ids is None:
        return order[_greedy_ranked(boxes[order], float(iou_threshold), limit)]
    # Classes never suppress each other: solve each on its own, then merge by rank.
    ranked_classes = class_ids[order]
    classes, first_rank, counts = np.unique(ranked_classes, return_index=True, return_counts=True)
    kept_ranks = [first_rank[counts == 1]]  # a class's only box is always kept
    for cls in classes[counts > 1]:
        ranks = np.nonzero(ranked_classes == cls)[0]
        kept_ranks.append(ranks[_greedy_ranked(boxes[order[ranks]], float(iou_threshold), limit)])
    return order[np.sort(np.concatenate(kept_ranks))[:limit]]


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
    boxes = as_boxes("weighted_nms", xyxy, np.float32)
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
    values = boxes  # what is blended: the boxes, then the keypoints, (N, 4 + 2P)
    if keypoints is not None:
        values = np.concatenate([boxes, keypoints.reshape(n, 2 * keypoints.shape[1])], axis=1)
    weights = scores.astype(np.float64)
    remaining = np.argsort(-scores, kind="stable")
    tops, blends = [], []
    # One pass per output cluster: a handful of faces per frame, so the loop is short.
    while remaining.size and len(tops) < limit:
        top = remaining[0]
        member = box_iou(boxes[top : top + 1], boxes[remaining])[0] > iou_threshold
        member[0] = True  # an empty box has IoU 0 with itself but still forms its own cluster
        if class_ids is not None:
            member &= class_ids[remaining] == class_ids[top]
        cluster = remaining[member]
        cluster_weights = weights[cluster]
        total = cluster_weights.sum()
        if total <= 0:
            cluster_weights = np.ones_like(cluster_weights)
            total = float(cluster.size)
        tops.append(top)
        blends.append((values[cluster] * cluster_weights[:, None]).sum(axis=0) / total)
        remaining = remaining[~member]
    k = len(tops)
    index = np.array(tops, dtype=np.int64).reshape(k)
    blended = np.array(blends, dtype=np.float32).reshape(k, values.shape[1])
    return WeightedNmsResult(
        index=index,
        xyxy=blended[:, :4],
        score=scores[index],
        keypoints=None if keypoints is None else blended[:, 4:].reshape((k,) + keypoints.shape[1:]),
    )


def select_detections(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    class_agnostic: bool = False,
) -> np.ndarray:
    """Score filter, then NMS, then the cap: what every box decoder does last.

    Args:
        xyxy: (N, 4) candidate boxes.
        scores: (N,) candidate scores.
        class_ids: (N,) candidate classes.
        score_threshold: candidates scoring below it are dropped first.
        iou_threshold: NMS IoU.
        max_detections: cap on the result.
        class_agnostic: suppress across classes.

    Returns:
        (K,) int64 indices into the candidates, by descending score.
    """
    candidates = np.nonzero(np.asarray(scores).reshape(-1) >= score_threshold)[0]
    if candidates.size == 0:
        return candidates.astype(np.int64)
    kept = nms(
        np.asarray(xyxy)[candidates],
        np.asarray(scores)[candidates],
        iou_threshold,
        class_ids=None if class_agnostic else np.asarray(class_ids)[candidates],
        max_detections=max_detections,
    )
    return candidates[kept]
