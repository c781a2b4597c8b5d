"""Where an evaluation's predictions come from: a model run here, or outputs recorded in a bag.

Both are :class:`PredictionSource` objects: :func:`~dl_vision.evaluation.offline.evaluate_bag`
hands them batches of bag frames and scores what they return. :class:`ModelPredictions` runs the
node's own :class:`~dl_vision.frame_processor.FrameProcessor` on the frames' messages (decoding
included); :class:`RecordedPredictions` looks up what a node published for each frame's stamp
(the live evaluation records that while the bag plays through the node).
"""

from __future__ import annotations

import abc
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

from dl_vision import messages
from dl_vision.backends import BACKENDS, ENGINES
from dl_vision.backends.onnxruntime import PROVIDER_ALIASES
from dl_vision.evaluation.bag_io import DETECTION_ARRAY, IMAGE, BagReader, Frame
from dl_vision.frame_processor import FrameProcessor, Outputs
from dl_vision.spec import CascadeSpec, ModelSpec
from dl_vision.structures import Detections, LabelTable, Segmentation


@dataclass
class Prediction:
    """What was predicted for one frame, with the frame's size in pixels."""

    width: int
    height: int
    detections: Optional[Detections] = None
    segmentation: Optional[Segmentation] = None


@dataclass
class PredictionInfo:
    """What scoring needs to know about a prediction source (small: it crosses process boundaries).

    Attributes: see :class:`PredictionSource`.
    """

    name: str
    batch_size: int
    detection_labels: Optional[LabelTable]
    segmentation_labels: Optional[LabelTable]
    score_threshold: Optional[float]


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

    def timing(self) -> Dict[str, Any]:
        """Model time so far: ``model_s`` and ``stage_ms`` totals (empty when nothing ran here)."""
        return {}

    def info(self) -> PredictionInfo:
        """The source's name, batch size, label tables and operating threshold."""
        return PredictionInfo(
            self.name, self.batch_size, self.detection_labels, self.segmentation_labels, self.score_threshold
        )


class ModelPredictions(PredictionSource):
    """Run a :class:`FrameProcessor` (detector and/or segmenter) on the frames, in batches.

    Args:
        processor: the models; the detector's options (score threshold) apply as set.
        batch_size: frames per model run (the model takes the batch at once where it can).
        score_threshold: the operating threshold to report; default: the detector's.
    """

    def __init__(self, processor: FrameProcessor, batch_size: int = 8, score_threshold: Optional[float] = None) -> None:
        self.processor = processor
        self.batch_size = max(1, int(batch_size))
        self.name = " + ".join(model.spec.name for model in processor.models)
        detector, segmenter = processor.detector, processor.segmenter
        self.detection_labels = dict(detector.labels) if detector is not None else None
        self.segmentation_labels = dict(segmenter.labels) if segmenter is not None else None
        if score_threshold is None and detector is not None:
            score_threshold = detector.options.score_threshold
        self.score_threshold = None if score_threshold is None else float(score_threshold)
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

    def timing(self) -> Dict[str, Any]:
        return {"model_s": self._model_s, "stage_ms": dict(self._stage_ms)}


@dataclass
class ModelSettings:
    """The models of an evaluation as plain data: each process that predicts (this one, or every
    Ray worker) builds its own :class:`ModelPredictions` from it, so all of them run the same models.

    Attributes:
        detector: the detector's spec, or None.
        segmenter: the segmenter's spec, or None.
        batch_size: frames per model run.
        score_floor: score threshold the detector predicts at (e.g. 0.05 for full COCO curves);
            the operating threshold stays the spec's. None predicts at the spec's threshold.
        runtime: backend options replacing the specs' ``runtime`` entries (e.g. ``{"threads": 1}``).
    """

    detector: Union[None, ModelSpec, CascadeSpec] = None
    segmenter: Union[None, ModelSpec, CascadeSpec] = None
    batch_size: int = 8
    score_floor: Optional[float] = None
    runtime: Dict[str, Any] = field(default_factory=dict)

    @property
    def specs(self) -> List[ModelSpec]:
        """The model specs to load (detector first; a cascade's first and second stages)."""
        out: List[ModelSpec] = []
        for spec in (self.detector, self.segmenter):
            if isinstance(spec, CascadeSpec):
                out += [spec.detector] + [stage.model for stage in spec.second_stages]
            elif spec is not None:
                out.append(spec)
        return out

    def build(self) -> ModelPredictions:
        """Load the models.

        Raises:
            ConfigError, ModelError, AssetError, BackendUnavailableError: as the models' ``from_spec``.
        """
        from dl_vision.pipeline import Detector, Segmenter

        detector = Detector.from_spec(self.detector, **self.runtime) if self.detector is not None else None
        operating = None
        if detector is not None and self.score_floor is not None:
            operating = detector.options.score_threshold
            detector.options.score_threshold = self.score_floor
        segmenter = Segmenter.from_spec(self.segmenter, **self.runtime) if self.segmenter is not None else None
        return ModelPredictions(FrameProcessor(detector, segmenter), self.batch_size, operating)

    def takes_runtime_option(self, option: str) -> bool:
        """Whether the backend of every model takes the runtime option ``option`` (e.g. ``threads``)."""
        return all(option in inspect.signature(BACKENDS.get(_runs_on(s))).parameters for s in self.specs)

    def uses_gpu(self) -> bool:
        """Whether a model runs on a GPU: a TensorRT engine (``format: tensorrt``, or ``runtime.engine:
        tensorrt``), or ONNX Runtime with a CUDA or TensorRT provider named in ``runtime.providers``."""
        gpu = {PROVIDER_ALIASES["cuda"], PROVIDER_ALIASES["tensorrt"]}
        for spec in self.specs:
            providers = spec.runtime.get("providers") or []
            providers = [providers] if isinstance(providers, str) else providers
            named = {PROVIDER_ALIASES.get(str(p).lower(), str(p)) for p in providers}
            if _runs_on(spec) == "tensorrt" or (spec.format == "onnx" and named & gpu):
                return True
        return False


def _runs_on(spec: ModelSpec) -> str:
    """The format whose backend runs the spec's file (``runtime.engine`` may pick another)."""
    return ENGINES.get((spec.format, spec.runtime.get("engine")), spec.format)


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
