"""Where an evaluation's predictions come from: a model run here, or outputs recorded in a bag.

Both are :class:`PredictionSource` objects: :func:`~dl_vision.evaluation.offline.evaluate_bag`
hands them batches of bag frames and scores what they return. :class:`ModelPredictions` runs the
node's own :class:`~dl_vision.frame_processor.FrameProcessor` on the frames' messages (decoding
included); :class:`RecordedPredictions` looks up what a node published for each frame's stamp
(the live evaluation records that while the bag plays through the node).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from dl_vision import messages
from dl_vision.evaluation.bag_io import DETECTION_ARRAY, IMAGE, BagReader, Frame
from dl_vision.frame_processor import FrameProcessor, Outputs
from dl_vision.structures import Detections, LabelTable, Segmentation


@dataclass
class Prediction:
    """What was predicted for one frame, with the frame's size in pixels."""

    width: int
    height: int
    detections: Optional[Detections] = None
    segmentation: Optional[Segmentation] = None


class PredictionSource(abc.ABC):
    """Predictions for bag frames, requested in batches of :attr:`batch_size`.

    Attributes:
        name: the model's name, for the report.
        batch_size: frames per :meth:`predict` call.
        detection_labels: the detector's ``{id: name}`` table, or None without detections.
        segmentation_labels: the segmenter's table, or None without class maps.
        score_threshold: the detector's operating threshold, or None.
    """

    name = ""
    batch_size = 1
    detection_labels: Optional[LabelTable] = None
    segmentation_labels: Optional[LabelTable] = None
    score_threshold: Optional[float] = None

    @abc.abstractmethod
    def predict(self, frames: Sequence[Frame]) -> List[Optional[Prediction]]:
        """One prediction per frame, in order (None for a frame with no prediction)."""

    def timing(self) -> Dict[str, object]:
        """Model time so far: ``model_s`` and ``stage_ms`` totals (empty when nothing ran here)."""
        return {}


class ModelPredictions(PredictionSource):
    """Run a :class:`FrameProcessor` (detector and/or segmenter) on the frames, in batches.

    Args:
        processor: the models; the detector's options (score threshold) apply as set.
        batch_size: frames per model run (the model takes the batch at once where it can).
    """

    def __init__(self, processor: FrameProcessor, batch_size: int = 8) -> None:
        self.processor = processor
        self.batch_size = max(1, int(batch_size))
        self.name = " + ".join(model.spec.name for model in processor.models)
        detector, segmenter = processor.detector, processor.segmenter
        self.detection_labels = dict(detector.labels) if detector is not None else None
        self.segmentation_labels = dict(segmenter.labels) if segmenter is not None else None
        self.score_threshold = float(detector.options.score_threshold) if detector is not None else None
        self._model_s = 0.0
        self._stage_ms: Dict[str, float] = {}

    def predict(self, frames: Sequence[Frame]) -> List[Optional[Prediction]]:
        outputs = Outputs(class_map=self.processor.segmenter is not None)
        start = time.perf_counter()
        results = self.processor.process([frame.message for frame in frames], outputs)
        self._model_s += time.perf_counter() - start
        for stage, ms in self.processor.timings.items():
            self._stage_ms[stage] = self._stage_ms.get(stage, 0.0) + ms
        return [Prediction(r.width, r.height, r.detections, r.segmentation) for r in results]

    def timing(self) -> Dict[str, object]:
        return {"model_s": self._model_s, "stage_ms": dict(self._stage_ms)}


class RecordedPredictions(PredictionSource):
    """What a node published, read from a bag and matched to frames by the input's header stamp.

    Args:
        bag: the bag holding the outputs.
        detections_topic: its ``dl_vision/DetectionArray`` topic, or None.
        class_map_topic: its mono8 class-map topic, or None.
        detection_labels: the detector's label table (names carried by the detections fill gaps).
        segmentation_labels: the segmenter's label table.
        name: the model's name, for the report.
        score_threshold: the operating threshold the node ran at.

    Raises:
        EvaluationError: the bag or a topic is missing or empty.
    """

    def __init__(
        self,
        bag,
        detections_topic: Optional[str] = None,
        class_map_topic: Optional[str] = None,
        detection_labels: Optional[LabelTable] = None,
        segmentation_labels: Optional[LabelTable] = None,
        name: str = "recorded",
        score_threshold: Optional[float] = None,
    ) -> None:
        self.name = name
        self.detection_labels = detection_labels if detections_topic else None
        self.segmentation_labels = segmentation_labels if class_map_topic else None
        self.score_threshold = score_threshold
        self._by_stamp: Dict[int, Prediction] = {}
        topics = [t for t in (detections_topic, class_map_topic) if t]
        with BagReader(bag) as reader:
            if detections_topic:
                reader.check_topic(detections_topic, (DETECTION_ARRAY,))
            if class_map_topic:
                reader.check_topic(class_map_topic, (IMAGE,))
            for topic, _, msg in reader.messages(topics):
                stamp = messages.stamp_to_ns(msg.header.stamp)
                if topic == detections_topic:
                    dets = messages.detections_from_msg(msg, detection_labels)
                    found = self._entry(stamp, int(msg.image_width), int(msg.image_height))
                    found.detections = dets
                else:
                    seg = messages.segmentation_from_msg(msg, segmentation_labels or {})
                    found = self._entry(stamp, seg.shape[1], seg.shape[0])
                    found.segmentation = seg

    def _entry(self, stamp: int, width: int, height: int) -> Prediction:
        if stamp not in self._by_stamp:
            self._by_stamp[stamp] = Prediction(width, height)
        return self._by_stamp[stamp]

    def __len__(self) -> int:
        return len(self._by_stamp)

    def predict(self, frames: Sequence[Frame]) -> List[Optional[Prediction]]:
        return [self._by_stamp.get(frame.stamp_ns) for frame in frames]
