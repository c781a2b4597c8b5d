"""The interface every decoder implements: raw model outputs in, a result value out."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections, LabelTable, Segmentation, make_label_table


@dataclasses.dataclass
class DecodeOptions:
    """Thresholds a decoder applies: a spec's ``thresholds:`` defaults, changed live by nodes.

    A model holds its own copy (``dataclasses.replace(spec.thresholds)``), so changing a
    model's options never changes its spec.

    Attributes:
        score_threshold: minimum score kept, 0..1 (``score`` in a spec).
        nms_iou: IoU above which NMS suppresses the lower-scored box, 0..1.
        max_detections: cap on detections returned per image.
        class_agnostic_nms: suppress across classes instead of within each.
        mask_threshold: probability above which a mask pixel is foreground, 0..1.
    """

    score_threshold: float = 0.5
    nms_iou: float = 0.45
    max_detections: int = 100
    class_agnostic_nms: bool = False
    mask_threshold: float = 0.5


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
