"""Keypoint accuracy: PCK (Percentage of Correct Keypoints).

A predicted keypoint is correct when it lies within ``alpha * scale`` pixels of its reference,
where ``scale`` is a size of the person: here the diagonal of the reference person box, so
``alpha = 0.2`` allows a fifth of the person's diagonal (PCK@0.2, as in the MPII and LSP
benchmarks' box-normalised variants).
"""

from __future__ import annotations

import numpy as np

from dl_vision.errors import EvaluationError


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
