"""The interface every decoder implements: raw model outputs in, a result value out."""

from __future__ import annotations

import abc
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections, LabelTable, Segmentation, make_label_table


class DecodeOptions:
    """Thresholds a decoder applies; nodes change them live (dynamic_reconfigure).

    Attributes:
        score_threshold: minimum score kept.
        nms_iou: IoU above which NMS suppresses the lower-scored box.
        max_detections: cap on detections returned per image.
        class_agnostic_nms: suppress across classes instead of within each.
        mask_threshold: probability above which a mask pixel is foreground.
    """

    __slots__ = ("score_threshold", "nms_iou", "max_detections", "class_agnostic_nms", "mask_threshold")

    def __init__(
        self,
        score_threshold: float = 0.5,
        nms_iou: float = 0.45,
        max_detections: int = 100,
        class_agnostic_nms: bool = False,
        mask_threshold: float = 0.5,
    ) -> None:
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.class_agnostic_nms = bool(class_agnostic_nms)
        self.mask_threshold = float(mask_threshold)


class Decoder(abc.ABC):
    """Turns one image's raw outputs into :class:`Detections` or :class:`Segmentation`.

    Subclasses take their spec parameters as keyword arguments in ``__init__``
    and raise :class:`~dl_vision.errors.ConfigError` on bad ones, and
    :class:`~dl_vision.errors.ModelError` when outputs do not have the expected
    names or shapes (saying which were expected and which were found).
    """

    #: Name used in model specs (``decoder: {type: <name>}``).
    name = ""

    def __init__(self, labels: Union[None, Sequence[str], Mapping[int, str]] = None, **params: Any) -> None:
        self.labels: LabelTable = make_label_table(labels)

    @abc.abstractmethod
    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Union[Detections, Segmentation]:
        """Decode the outputs of ONE image (batch dimension already removed or of size 1).

        Args:
            outputs: ``{output name: array}`` as returned by the backend.
            transform: how the input image was mapped to the model input.
            options: thresholds; decoder defaults when None.

        Returns:
            Results in input-image pixels (see :mod:`dl_vision.structures`).
        """
