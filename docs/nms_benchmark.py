#!/usr/bin/env python3
"""Measure dl_vision's NMS against OpenCV's ``cv2.dnn.NMSBoxes`` and check that they agree.

Run inside the env (``source bootstrap/activate.sh``)::

    python3 docs/nms_benchmark.py                 # timings (medians) and the agreement check
    python3 docs/nms_benchmark.py --repeats 200 --cases 2000

Cases, all with IoU 0.45:

* ``yolo``: 8,400 boxes as a YOLOv8 head at 640x640 gives them (one per cell of the stride
  8/16/32 grids, sizes of a few strides), each with the best of 80 classes and its score,
  all above the score threshold; class-aware; capped at 100 (the decoders' default) or not.
* ``survivors``: 3,000 small objects spread over a large image, 400 of them detected twice
  (a jittered copy with a lower score): about 3,000 boxes kept; class-aware and
  class-agnostic, no cap.

``cv2 offsets`` is the candidate the NMS section of ``docs/model_formats.md`` weighs: one
``NMSBoxes`` call over all boxes, each class shifted along x by its rank times the span of all
boxes so classes never overlap (the usual class-aware trick). ``cv2 per class`` calls
``NMSBoxes`` once per class instead. Both pass scores as descending ranks, so that OpenCV's
order (a stable sort by score) is ours, ties included, and boxes of zero area (IoU 0 with
everything for us, 1 with each other for OpenCV) bypass OpenCV and are always kept.

``--probe`` only reports whether this OpenCV's Python binding keeps fractional coordinates
(OpenCV 4.2, Ubuntu 20.04's, converts them to integers).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from dl_vision.decoders.nms import nms

IOU = 0.45
Case = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[int]]


def _ranked_for_cv2(boxes: np.ndarray, scores: np.ndarray):
    """Rank order, (N, 4) float64 ranked boxes, and the ranks of the boxes with a positive area."""
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order].astype(np.float64)
    solid = np.nonzero((ranked[:, 2:] > ranked[:, :2]).all(axis=1))[0]
    return order, ranked, solid


def _cv2_keep(xyxy: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Ranks kept by NMSBoxes among boxes already in rank order."""
    if xyxy.shape[0] == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    rank_scores = np.arange(xyxy.shape[0], 0, -1, dtype=np.float32)
    return np.asarray(cv2.dnn.NMSBoxes(xywh, rank_scores, 0.0, iou_threshold), np.int64).reshape(-1)


def _merge(order: np.ndarray, n: int, kept_ranks: List[np.ndarray], solid: np.ndarray, limit: Optional[int]):
    empty = np.setdiff1d(np.arange(n), solid)  # zero-area boxes overlap nothing: always kept
    ranks = np.sort(np.concatenate(kept_ranks + [empty]))
    return order[ranks if limit is None else ranks[:limit]]


def cv2_offsets(boxes, scores, iou_threshold, class_ids=None, max_detections=None) -> np.ndarray:
    """Greedy NMS by one ``NMSBoxes`` call, classes separated by x offsets."""
    order, ranked, solid = _ranked_for_cv2(boxes, scores)
    shifted = ranked[solid]
    if class_ids is not None and solid.size:
        _, dense = np.unique(class_ids[order][solid], return_inverse=True)
        span = shifted[:, 2].max() - shifted[:, 0].min() + 1.0
        shifted[:, [0, 2]] += (dense * span)[:, None]
    return _merge(order, len(scores), [solid[_cv2_keep(shifted, iou_threshold)]], solid, max_detections)


def cv2_per_class(boxes, scores, iou_threshold, class_ids=None, max_detections=None) -> np.ndarray:
    """Greedy NMS by one ``NMSBoxes`` call per class."""
    order, ranked, solid = _ranked_for_cv2(boxes, scores)
    if class_ids is None:
        return _merge(order, len(scores), [solid[_cv2_keep(ranked[solid], iou_threshold)]], solid, max_detections)
    ranked_classes = class_ids[order][solid]
    kept = []
    for cls in np.unique(ranked_classes):
        ranks = solid[ranked_classes == cls]
        kept.append(ranks[_cv2_keep(ranked[ranks], iou_threshold)])
    return _merge(order, len(scores), kept, solid, max_detections)


def yolo_case(rng: np.random.Generator, max_detections: Optional[int]) -> Case:
    """8,400 YOLOv8-like candidates over 80 classes."""
    parts = []
    for stride in (8, 16, 32):
        cells = 640 // stride
        cy, cx = np.mgrid[0:cells, 0:cells]
        centre = (np.stack([cx.ravel(), cy.ravel()], axis=1) + 0.5) * stride
        centre += rng.normal(0.0, stride / 2.0, centre.shape)
        size = stride * np.exp(rng.uniform(0.0, 2.5, centre.shape))
        parts.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
    boxes = np.concatenate(parts).astype(np.float32)
    class_scores = rng.uniform(size=(len(boxes), 80)).astype(np.float32) ** 8
    class_ids = class_scores.argmax(axis=1)
    return boxes, class_scores[np.arange(len(boxes)), class_ids], class_ids, max_detections


def survivors_case(rng: np.random.Generator, class_aware: bool) -> Case:
    """3,000 small objects on a 4000x4000 image, 400 of them detected twice: about 3,000 survive."""
    corner = rng.uniform(0.0, 4000.0, (3000, 2))
    objects = np.concatenate([corner, corner + rng.uniform(5.0, 20.0, (3000, 2))], axis=1)
    twice = rng.choice(3000, 400, replace=False)
    boxes = np.concatenate([objects, objects[twice] + rng.uniform(-1.0, 1.0, (400, 4))]).astype(np.float32)
    object_scores = rng.uniform(0.1, 1.0, 3000)
    scores = np.concatenate([object_scores, object_scores[twice] * 0.9]).astype(np.float32)
    object_classes = rng.integers(0, 80, 3000)
    class_ids = np.concatenate([object_classes, object_classes[twice]])
    return boxes, scores, class_ids if class_aware else None, None


def random_case(rng: np.random.Generator) -> Tuple[Case, float]:
    """A random case for the agreement check: grid or continuous boxes, tied scores, empty boxes."""
    n = int(rng.integers(0, 600))
    if rng.uniform() < 0.5:  # coarse grid: exact ties in IoU and in score
        corner = rng.integers(0, 20, (n, 2)) * 5.0
        boxes = np.concatenate([corner, corner + rng.integers(0, 6, (n, 2)) * 5.0], axis=1)
        scores = rng.integers(0, 10, n) / 10.0
    else:
        corner = rng.uniform(-50.0, 300.0, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(0.0, 80.0, (n, 2))], axis=1)
        scores = rng.uniform(size=n)
    class_ids = rng.integers(0, int(rng.integers(1, 6)), n) if rng.uniform() < 0.5 else None
    cap = None if rng.uniform() < 0.5 else int(rng.integers(1, 50))
    iou = float(rng.choice([0.0, 0.3, 0.45, 0.5, 0.7, 1.0]))
    return (boxes.astype(np.float32), scores.astype(np.float32), class_ids, cap), iou


def median_ms(methods: Dict[str, Callable], case: Case, repeats: int) -> Dict[str, float]:
    """Median wall time of each method on ``case``, the methods interleaved so load hits all alike."""
    boxes, scores, class_ids, cap = case
    times: Dict[str, List[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            method(boxes, scores, IOU, class_ids, cap)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def probe() -> bool:
    """True when NMSBoxes honours fractional coordinates (boxes as lists: 4.2 aborts on arrays)."""
    # IoU of [0, 0.5] x [0, 1] and [0.25, 0.75] x [0, 1] is 1/3: both kept at 0.5. As integers both are empty.
    kept = cv2.dnn.NMSBoxes([[0.0, 0.0, 0.5, 1.0], [0.25, 0.0, 0.5, 1.0]], [0.9, 0.8], 0.0, 0.5)
    return len(np.asarray(kept).reshape(-1)) == 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=100, help="timed runs per case and method")
    parser.add_argument("--cases", type=int, default=1000, help="random cases for the agreement check")
    parser.add_argument("--probe", action="store_true", help="only check fractional coordinates")
    args = parser.parse_args()
    print("cv2 %s, numpy %s; NMSBoxes keeps fractional coordinates: %s" % (cv2.__version__, np.__version__, probe()))
    if args.probe:
        return
    methods = {"dl_vision nms": nms, "cv2 offsets": cv2_offsets, "cv2 per class": cv2_per_class}
    rng = np.random.default_rng(0)
    cases = [
        ("yolo 8,400 x 80, class-aware, cap 100", yolo_case(rng, 100)),
        ("yolo 8,400 x 80, class-aware, no cap", yolo_case(rng, None)),
        ("survivors: 3,400 boxes, class-aware", survivors_case(rng, True)),
        ("survivors: 3,400 boxes, class-agnostic", survivors_case(rng, False)),
    ]
    print("\n| case | kept | %s |" % " | ".join("%s ms" % name for name in methods))
    print("|---|---|" + "---|" * len(methods))
    for label, case in cases:
        kept = nms(case[0], case[1], IOU, case[2], case[3])
        for name, method in methods.items():
            assert np.array_equal(method(case[0], case[1], IOU, case[2], case[3]), kept), (label, name)
        ms = median_ms(methods, case, args.repeats)
        print("| %s | %d | %s |" % (label, len(kept), " | ".join("%.2f" % ms[name] for name in methods)))
    differ = 0
    for _ in range(args.cases):
        (boxes, scores, class_ids, cap), iou = random_case(rng)
        expected = nms(boxes, scores, iou, class_ids, cap)
        if not np.array_equal(cv2_offsets(boxes, scores, iou, class_ids, cap), expected) or not np.array_equal(
            cv2_per_class(boxes, scores, iou, class_ids, cap), expected
        ):
            differ += 1
    print("\nagreement: %d of %d random cases differ (medians of %d runs)" % (differ, args.cases, args.repeats))


if __name__ == "__main__":
    main()
