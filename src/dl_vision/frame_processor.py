"""What a vision node does with a frame, without ROS: decode, run the models, annotate, build messages.

One :class:`FrameProcessor` serves the nodes (``dl_vision.ros.nodes`` only subscribes, hands frames
over and publishes the messages built here), the benchmark (which times this very object) and the
offline evaluation (which feeds it bag messages in batches)::

    processor = FrameProcessor(Detector.from_spec("face"), Segmenter.from_spec("person_segmentation"))
    (result,) = processor.process([image_msg], Outputs(annotated=True), messages.genpy_types())
    result.detections, result.segmentation, result.annotated, result.messages.detections
    processor.timings   # {"decode": 0.01, "detector/inference": 4.6, ..., "message_build": 0.1}

Frames are ``sensor_msgs/Image`` or ``CompressedImage`` messages (genpy or rosbags), or BGR arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from dl_vision import annotate, messages
from dl_vision.errors import ImageConversionError
from dl_vision.structures import Detections, Segmentation

Frame = Union[np.ndarray, Any]  # a BGR array, or an Image / CompressedImage message


@dataclass(frozen=True)
class Outputs:
    """The optional outputs to produce (detections always are, when the detector is on).

    Attributes:
        class_map: the segmenter's :class:`Segmentation` (and its ``mono8`` message).
        color_mask: the class map colour-coded as a BGR image.
        annotated: the frame with boxes, names, keypoints and the mask overlay drawn on it.
    """

    class_map: bool = False
    color_mask: bool = False
    annotated: bool = False

    @property
    def segmentation(self) -> bool:
        """True when any output needs the segmenter to run."""
        return self.class_map or self.color_mask or self.annotated


@dataclass
class FrameMessages:
    """The messages of one frame, each None when not produced."""

    detections: Any = None
    class_map: Any = None
    color_mask: Any = None
    annotated: Any = None


@dataclass
class FrameResult:
    """Everything produced for one frame.

    Attributes:
        header: the input message's header (None for an array).
        width, height: input image size in pixels.
        image: the decoded (H, W, 3) uint8 BGR frame (a read-only view of the message where possible).
        detections: the detector's results after the class filter, or None when it did not run.
        segmentation: the segmenter's class map, or None when it did not run.
        color_mask: (H, W, 3) uint8 colour-coded classes, when asked for.
        annotated: (H, W, 3) uint8 drawing, when asked for.
        messages: the output messages, when message types were given.
    """

    header: Any
    width: int
    height: int
    image: np.ndarray
    detections: Optional[Detections] = None
    segmentation: Optional[Segmentation] = None
    color_mask: Optional[np.ndarray] = None
    annotated: Optional[np.ndarray] = None
    messages: FrameMessages = field(default_factory=FrameMessages)


class FrameProcessor:
    """Decode frames, run a detector and/or a segmenter, annotate and build the output messages.

    Args:
        detector: a :class:`~dl_vision.pipeline.Detector` (or any model with its interface), or None.
        segmenter: a :class:`~dl_vision.pipeline.Segmenter`, or None.

    Attributes (live settings; a dynamic_reconfigure thread may change them between frames):
        detector_enabled: run the detector.
        class_filter: class names or ids to keep (None keeps all).
        segmenter_enabled: run the segmenter when an output needs it.
        mask_alpha: opacity of the class map in the annotated image.
        timings: milliseconds of the last call's stages (``deserialize``, ``decode``,
            ``detector/preprocess``, ``detector/inference``, ``detector/postprocess``, the same for
            ``segmenter/``, ``annotate``, ``message_build``), for the whole batch; replaced at once.
    """

    def __init__(self, detector: Any = None, segmenter: Any = None) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.detector_enabled = detector is not None
        self.class_filter: Optional[Tuple[str, ...]] = None
        self.segmenter_enabled = segmenter is not None
        self.mask_alpha = 0.5
        self.timings: Dict[str, float] = {}

    @property
    def models(self) -> List[Any]:
        """The loaded models (detector first)."""
        return [m for m in (self.detector, self.segmenter) if m is not None]

    @property
    def supports_batch(self) -> bool:
        """True when every loaded model runs several frames as one batch (one model run for all)."""
        models = self.models
        return bool(models) and all(model.backend.supports_batch for model in models)

    def process_serialized(
        self,
        data: bytes,
        message_class: Any,
        outputs: Outputs = Outputs(),
        types: Optional[messages.MessageTypes] = None,
    ) -> FrameResult:
        """Deserialise one genpy ``Image``/``CompressedImage`` from its wire bytes and process it.

        Raises:
            ImageConversionError: the bytes do not parse as ``message_class``, or the image is bad.
            ModelError: a model's outputs do not fit its decoder.
        """
        (result,) = self.process_serialized_batch([data], message_class, outputs, types)
        if isinstance(result, ImageConversionError):
            raise result
        return result

    def process_serialized_batch(
        self,
        frames: Sequence[bytes],
        message_class: Any,
        outputs: Union[Outputs, Sequence[Outputs]] = Outputs(),
        types: Optional[messages.MessageTypes] = None,
    ) -> List[Union[FrameResult, ImageConversionError]]:
        """Deserialise genpy ``Image``/``CompressedImage`` messages and process them as one batch.

        A frame that cannot be deserialised or decoded costs only itself: its error takes its
        place in the returned list and the other frames go through the models together.

        Args:
            frames: each message's wire bytes.
            message_class: the genpy class they are (``Image`` or ``CompressedImage``).
            outputs: the optional outputs wanted, for all frames or one per frame.
            types: the message family to build the output messages in; None builds none.

        Returns:
            Per frame, in order, its :class:`FrameResult` or the :class:`ImageConversionError` it failed with.

        Raises:
            ModelError: a model's outputs do not fit its decoder (the whole batch is lost).
        """
        wanted = _per_frame(outputs, len(frames))
        timings: Dict[str, float] = {}
        clock = time.perf_counter()
        parsed = [_attempt(_deserialize, data, message_class) for data in frames]
        clock = _lap(timings, "deserialize", clock)
        entries = [entry if isinstance(entry, Exception) else _attempt(self._decode, entry) for entry in parsed]
        _lap(timings, "decode", clock)
        good = [i for i, entry in enumerate(entries) if isinstance(entry, FrameResult)]
        if good:  # else the last batch's timings stay: diagnostics show a real batch's stages
            self._run([entries[i] for i in good], [wanted[i] for i in good], types, timings)
        return entries

    def process(
        self,
        frames: Sequence[Frame],
        outputs: Union[Outputs, Sequence[Outputs]] = Outputs(),
        types: Optional[messages.MessageTypes] = None,
    ) -> List[FrameResult]:
        """Process frames as one batch (one model run where the model takes a batch).

        Args:
            frames: ``Image``/``CompressedImage`` messages or (H, W, 3) uint8 BGR arrays.
            outputs: the optional outputs wanted, for all frames or one per frame.
            types: the message family to build the output messages in; None builds none.

        Returns:
            One :class:`FrameResult` per frame, in order.

        Raises:
            ImageConversionError: a frame cannot be decoded (the batch is abandoned).
            ModelError: a model's outputs do not fit its decoder.
        """
        wanted = _per_frame(outputs, len(frames))
        timings: Dict[str, float] = {}
        clock = time.perf_counter()
        results = [self._decode(frame) for frame in frames]
        _lap(timings, "decode", clock)
        self._run(results, wanted, types, timings)
        return results

    def _run(
        self,
        results: List[FrameResult],
        outputs: List[Outputs],
        types: Optional[messages.MessageTypes],
        timings: Dict[str, float],
    ) -> None:
        """Run the models on decoded frames, draw and build messages; publish ``timings`` as :attr:`timings`."""
        clock = time.perf_counter()
        detected: Optional[List[Detections]] = None
        if self.detector is not None and self.detector_enabled and results:
            class_filter = self.class_filter
            detected = self.detector.predict_batch([r.image for r in results])
            for result, dets in zip(results, detected):
                result.detections = dets.filter(classes=class_filter) if class_filter else dets
            _add_model_timings(timings, "detector", self.detector.timings)
            clock = time.perf_counter()
        # Only the frames whose camera has a subscriber to a segmentation output.
        segmented = [i for i, wanted in enumerate(outputs) if wanted.segmentation]
        if self.segmenter is not None and self.segmenter_enabled and segmented:
            if detected is not None and getattr(self.segmenter, "cascade", None) is self.detector:
                # The segmenter is the detector's own cascade: its class maps come from the masks just found.
                for i in segmented:
                    results[i].segmentation = self.segmenter.class_map(detected[i], results[i].image.shape[:2])
                clock = _lap(timings, "segmenter/class_map", clock)
            else:
                maps = self.segmenter.predict_batch([results[i].image for i in segmented])
                for i, seg in zip(segmented, maps):
                    results[i].segmentation = seg
                _add_model_timings(timings, "segmenter", self.segmenter.timings)
                clock = time.perf_counter()
        if any(wanted.color_mask or wanted.annotated for wanted in outputs):
            for result, wanted in zip(results, outputs):
                self._draw(result, wanted)
            clock = _lap(timings, "annotate", clock)
        if types is not None:
            for result, wanted in zip(results, outputs):
                self._build_messages(result, wanted, types)
            _lap(timings, "message_build", clock)
        self.timings = timings

    @staticmethod
    def _decode(frame: Frame) -> FrameResult:
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
                raise ImageConversionError(
                    "image array: expected (H, W, 3) uint8 BGR, found %s %s" % (frame.shape, frame.dtype)
                )
            header, image = None, frame
        else:
            # A view of the message's bytes where possible: the models and annotators only read it.
            header, image = frame.header, messages.to_bgr(frame, copy=False)
        return FrameResult(header, image.shape[1], image.shape[0], image)

    def _draw(self, result: FrameResult, outputs: Outputs) -> None:
        if outputs.color_mask and result.segmentation is not None:
            result.color_mask = annotate.colorize_segmentation(result.segmentation)
        if outputs.annotated:
            drawn = result.image
            if result.segmentation is not None:
                drawn = annotate.overlay_segmentation(drawn, result.segmentation, self.mask_alpha)
            if result.detections is not None:
                drawn = annotate.draw_detections(drawn, result.detections)
            result.annotated = drawn

    def _build_messages(self, result: FrameResult, outputs: Outputs, types: messages.MessageTypes) -> None:
        header = result.header if result.header is not None else messages.make_header(types=types)
        built = result.messages
        if result.detections is not None:
            built.detections = messages.detections_to_msg(
                result.detections, header, result.width, result.height, self.detector.spec.name, types
            )
        if outputs.class_map and result.segmentation is not None:
            built.class_map = messages.segmentation_to_msg(result.segmentation, header, types)
        if result.color_mask is not None:
            built.color_mask = messages.bgr_to_image_msg(result.color_mask, header, types)
        if result.annotated is not None:
            built.annotated = messages.bgr_to_image_msg(result.annotated, header, types)


def _deserialize(data: bytes, message_class: Any) -> Any:
    """A genpy message from its wire bytes.

    Raises:
        ImageConversionError: the bytes do not parse as ``message_class``.
    """
    import genpy

    try:
        return message_class().deserialize(data)
    except genpy.DeserializationError as err:
        raise ImageConversionError("input message: cannot deserialise %s: %s" % (message_class._type, err)) from None


def _attempt(step: Callable[..., Any], *args: Any) -> Any:
    """``step(*args)``, or the :class:`ImageConversionError` it raised (one frame's failure, kept in its place)."""
    try:
        return step(*args)
    except ImageConversionError as err:
        return err


def _per_frame(outputs: Union[Outputs, Sequence[Outputs]], count: int) -> List[Outputs]:
    """One :class:`Outputs` per frame (the same for all when one is given)."""
    if isinstance(outputs, Outputs):
        return [outputs] * count
    if len(outputs) != count:
        raise ValueError("outputs: expected one per frame (%d), found %d" % (count, len(outputs)))
    return list(outputs)


def _lap(timings: Dict[str, float], stage: str, since: float) -> float:
    """Record the milliseconds since ``since`` as ``stage``; returns now."""
    now = time.perf_counter()
    timings[stage] = (now - since) * 1e3
    return now


def _add_model_timings(timings: Dict[str, float], prefix: str, model_timings: Dict[str, float]) -> None:
    for stage, ms in model_timings.items():
        timings["%s/%s" % (prefix, stage)] = float(ms)
