"""Offline evaluation: read a bag with rosbags (no ROS master), predict every frame, score it.

The work comes in two halves, so that it can be spread over processes and machines
(:mod:`dl_vision.evaluation.fleet`) and still give the numbers of one pass over the bags:

- :func:`score_shard`, a worker's half, reads the frames of a :class:`Shard` (a whole bag, or a
  bag-time range of one), pairs them with their ground truth, runs the predictions and returns a
  :class:`ShardResult`: frame counts, one compact :class:`FrameRecord` per scored frame (boxes,
  scores, class names, RLE masks, model time) and the class-map pixel confusion counts.
- :class:`Evaluation`, the driver's half, puts the records of all shards in frame order and
  computes the metrics once.

:func:`evaluate_bag` runs both halves here, on one bag. Predictions come from a
:class:`~dl_vision.evaluation.predictions.PredictionSource`: a model run here through the node's
frame processor, or outputs a node published, recorded in a bag (what the live evaluation does).
Pixels stream through: the bag is read chunk by chunk, ground-truth topics are paired with their
frames in a small window, and only the records (about 1 KB per frame) and pixel counts are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
from tqdm import tqdm

from dl_vision import messages
from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import DETECTION_ARRAY, IMAGE, IMAGE_TYPES, BagReader, Frame
from dl_vision.evaluation.coco_metrics import CocoAccumulator, encode_mask
from dl_vision.evaluation.confusion import ConfusionAccumulator
from dl_vision.evaluation.ground_truth import CocoGroundTruth, FrameTruth
from dl_vision.evaluation.keypoint_metrics import KeypointAccumulator
from dl_vision.evaluation.predictions import Prediction, PredictionInfo, PredictionSource
from dl_vision.evaluation.report import DetectionMetrics, FrameCounts, Report, Source, Throughput
from dl_vision.evaluation.segmentation_metrics import SegmentationAccumulator
from dl_vision.structures import Detections, LabelTable

LOG = logging.getLogger(__name__)

#: Frames waiting for their ground-truth message before they count as unlabelled.
PAIRING_WINDOW = 256


class GroundTruthSource:
    """Where the ground truth comes from: a COCO file and/or topics of the evaluated bag.

    Args:
        coco_json: COCO annotation file keyed to frames (see :mod:`dl_vision.evaluation.ground_truth`).
        detections_topic: ``dl_vision/DetectionArray`` ground-truth topic in the bag.
        class_map_topic: mono8 class-map ground-truth topic in the bag.

    Raises:
        EvaluationError: none of the three is given.
    """

    def __init__(
        self, coco_json=None, detections_topic: Optional[str] = None, class_map_topic: Optional[str] = None
    ) -> None:
        if not (coco_json or detections_topic or class_map_topic):
            raise EvaluationError("ground truth: expected a COCO JSON file or a ground-truth topic, found neither")
        self.coco_json = coco_json
        self.detections_topic = detections_topic
        self.class_map_topic = class_map_topic

    @property
    def topics(self) -> List[str]:
        """Ground-truth topics to read from the bag."""
        return [t for t in (self.detections_topic, self.class_map_topic) if t]

    @property
    def has_boxes(self) -> bool:
        """Whether the truth holds object boxes (a COCO file or a detections topic)."""
        return bool(self.coco_json or self.detections_topic)

    def describe(self) -> Any:
        """The COCO file's path, or the ground-truth topics (for the report)."""
        return str(self.coco_json) if self.coco_json else self.topics


@dataclass
class Scoring:
    """How predictions are scored.

    Attributes:
        class_names: evaluated detection classes (predictions of other classes are ignored);
            default: the COCO file's categories, else the detector's labels, else the names on the
            ground-truth topic.
        seg_labels: ``{id: name}`` of the segmentation classes; default: the segmenter's.
        score_threshold: operating threshold of the confusion matrix and P/R/F1; default: the
            detector's, else 0.5.
        iou_threshold: IoU a prediction needs to match a ground-truth box at the operating point.
    """

    class_names: Optional[Sequence[str]] = None
    seg_labels: Optional[LabelTable] = None
    score_threshold: Optional[float] = None
    iou_threshold: float = 0.5


def check_inputs(
    bag, image_topic: str, truth: GroundTruthSource, allow_partial: bool = False
) -> Optional[CocoGroundTruth]:
    """The cheap checks, before any model loads: the bag, its topics and the COCO file are usable.

    ``allow_partial``: accept a damaged bag whose readable part has the topics (see :class:`BagReader`).

    Returns:
        The parsed COCO ground truth, or None when the truth is in topics only.

    Raises:
        EvaluationError: a missing or unreadable bag, a missing or empty topic, a bad COCO file.
    """
    coco = CocoGroundTruth(truth.coco_json, image_topic) if truth.coco_json else None
    with BagReader(bag, allow_partial) as reader:
        reader.check_topic(image_topic, IMAGE_TYPES)
        if truth.detections_topic:
            reader.check_topic(truth.detections_topic, (DETECTION_ARRAY,))
        if truth.class_map_topic:
            reader.check_topic(truth.class_map_topic, (IMAGE,))
    return coco


@dataclass
class Shard:
    """A unit of work: a run of consecutive frames of one bag's image topic.

    With ground-truth topics, the shard reads :data:`PAIRING_WINDOW` frames more on each side
    (and the truth recorded among them) and pairs them as one pass over the bag would, but
    scores only its own frames: truth recorded up to half the window apart from its frame pairs
    exactly as it does in one pass.

    Attributes:
        bag: the bag file (a path every worker can open).
        image_topic: the evaluated topic.
        truth: the bag's ground truth.
        first_index: position of the shard's first frame on the topic.
        frames: the shard's frames; a worker that finds another number fails the shard.
        read_start_ns, read_stop_ns: bag times ``[start, stop)`` read (ns); None leaves an end open.
        read_first_index: position on the topic of the first frame read.
        seg_classes: number of segmentation class ids (0..C-1) when class maps are scored.
        bag_index: position of the bag in the run; number: position of the shard in its bag.
        allow_partial: read what is readable of a damaged bag (see :class:`BagReader`); such a
            shard is a whole bag and may end with fewer frames than planned.
    """

    bag: str
    image_topic: str
    truth: GroundTruthSource
    first_index: int
    frames: int
    read_start_ns: Optional[int] = None
    read_stop_ns: Optional[int] = None
    read_first_index: int = 0
    seg_classes: Optional[int] = None
    bag_index: int = 0
    number: int = 0
    allow_partial: bool = False

    def describe(self) -> str:
        """``<bag> frames <first>-<last>``, for messages."""
        return "%s frames %d-%d" % (self.bag, self.first_index, self.first_index + self.frames - 1)


class FrameRecord:
    """What one scored frame adds to the detection metrics: compact enough to travel from a worker.

    Attributes:
        index: position of the frame on its topic.
        width, height: the frame's size in pixels.
        truth_boxes: (G, 4) float64 ``x_min, y_min, x_max, y_max`` pixels.
        truth_names: G class names. truth_crowd: (G,) bool crowd flags.
        truth_masks: G COCO RLEs of the instance masks ([] for a frame without objects), or None.
        boxes: (P, 4) float32 predicted boxes in pixels; None when detections are not scored
            (no detector ran, or the truth has no boxes).
        scores: (P,) float32. names: P class names.
        masks: P COCO RLEs of the predicted masks, or None; both are encoded only when both sides
            have masks (or no object).
        keypoint_boxes: (R, 4) boxes of the truth's objects of the keypoint class, or None without
            keypoint truth; keypoint_truth: their (R, K, 3) keypoints; keypoint_areas: (R,) their
            mask areas (None without masks); keypoint_crowd: (R,) their crowd flags;
            keypoint_predictions: the predictions of that class that carry keypoints (no masks).
        model_ms: the frame's share of its batch's model time, milliseconds.
    """

    __slots__ = (
        "index",
        "width",
        "height",
        "truth_boxes",
        "truth_names",
        "truth_crowd",
        "truth_masks",
        "boxes",
        "scores",
        "names",
        "masks",
        "keypoint_boxes",
        "keypoint_truth",
        "keypoint_areas",
        "keypoint_crowd",
        "keypoint_predictions",
        "model_ms",
    )

    def __init__(self, index: int, width: int, height: int, model_ms: float = 0.0) -> None:
        self.index, self.width, self.height, self.model_ms = index, width, height, model_ms
        self.truth_boxes = np.zeros((0, 4))
        self.truth_names: List[str] = []
        self.truth_crowd = np.zeros(0, bool)
        self.truth_masks: Optional[List[dict]] = None
        self.boxes: Optional[np.ndarray] = None
        self.scores = np.zeros(0, np.float32)
        self.names: List[str] = []
        self.masks: Optional[List[dict]] = None
        self.keypoint_boxes: Optional[np.ndarray] = None
        self.keypoint_truth: Optional[np.ndarray] = None
        self.keypoint_areas: Optional[np.ndarray] = None
        self.keypoint_crowd: Optional[np.ndarray] = None
        self.keypoint_predictions: Optional[Detections] = None

    @classmethod
    def build(
        cls,
        frame: Frame,
        truth: FrameTruth,
        prediction: Prediction,
        box_truth: bool,
        model_ms: float,
        keypoint_class: Optional[str] = None,
    ) -> "FrameRecord":
        """The record of a frame, its truth and its prediction.

        Args:
            box_truth: the bag's truth has boxes (else detections are not scored).
            keypoint_class: the class whose keypoints the truth labels, or None.
        """
        record = cls(frame.index, prediction.width, prediction.height, model_ms)
        dets = prediction.detections
        if dets is not None and keypoint_class is not None and truth.keypoints is not None:
            wanted = np.array([n == keypoint_class for n in truth.class_names], bool).reshape(-1)
            record.keypoint_boxes, record.keypoint_truth = truth.boxes[wanted], truth.keypoints[wanted]
            record.keypoint_crowd = truth.iscrowd[wanted]
            if truth.masks is not None:
                record.keypoint_areas = truth.masks[wanted].sum(axis=(1, 2))
            chosen = np.array([n == keypoint_class for n in dets.class_names], bool).reshape(-1)
            posed = dets[chosen & dets.has_keypoints]
            record.keypoint_predictions = Detections(
                posed.xyxy,
                posed.score,
                posed.class_id,
                posed.labels,
                keypoints=posed.keypoints,
                keypoint_scores=posed.keypoint_scores,
                keypoint_schema=posed.keypoint_schema,
            )
        if not box_truth or dets is None:
            return record
        record.truth_boxes, record.truth_names, record.truth_crowd = truth.boxes, truth.class_names, truth.iscrowd
        record.boxes, record.scores, record.names = dets.xyxy, dets.score, dets.class_names
        # Masks are encoded only where both sides can give them; a side with no object has none to give.
        if (truth.masks is not None or not len(truth.boxes)) and (dets.masks is not None or not len(dets)):
            record.truth_masks = [encode_mask(m) for m in truth.masks] if truth.masks is not None else []
            record.masks = [encode_mask(m) for m in dets.masks] if dets.masks is not None else []
        return record


@dataclass
class ShardResult:
    """What a worker sends back for one shard.

    Attributes:
        shard: the shard.
        counts: its frame counts (``evaluated`` is the number of records).
        records: one per scored frame.
        segmentation: the class-map pixel counts of its frames, when class maps are scored.
        coco_images: ids of the COCO images its frames matched.
        timing: model time, ``model_s`` and ``stage_ms`` totals (empty when no model ran).
        started_at: when the worker started it (seconds since the epoch, the worker's clock).
        wall_s: seconds the worker spent on it.
        worker: ``host:pid`` of the process that scored it.
        damage: what a partial read of a damaged bag lost (see :meth:`BagReader.damage_report`), or None.
    """

    shard: Shard
    counts: FrameCounts
    records: List[FrameRecord]
    segmentation: Optional[SegmentationAccumulator] = None
    coco_images: Set[int] = field(default_factory=set)
    timing: Dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    wall_s: float = 0.0
    worker: str = ""
    damage: Optional[str] = None


def paired_frames(
    reader: BagReader, shard: Shard, coco: Optional[CocoGroundTruth], counts: FrameCounts
) -> Iterator[Tuple[Frame, FrameTruth]]:
    """The frames of a shard (undecoded) with their ground truth, in pairing order, read from ``reader``.

    Ground-truth messages are matched by header stamp within :data:`PAIRING_WINDOW` frames;
    frames read and frames without truth are counted in ``counts``.
    """
    truth = shard.truth
    pending: "OrderedDict[int, Dict[str, Any]]" = OrderedDict()
    wanted = set(truth.topics)

    def emit(entry: Dict[str, Any]) -> Optional[Tuple[Frame, FrameTruth]]:
        frame = entry["frame"]
        if not shard.first_index <= frame.index < shard.first_index + shard.frames:
            return None  # read only to pair as one pass would; another shard scores it
        counts.frames += 1
        result = coco.lookup(frame) if coco is not None else None
        if truth.topics and wanted.issubset(entry):
            result = result or FrameTruth()
            if truth.detections_topic:
                gt = messages.detections_from_msg(entry[truth.detections_topic])
                result.boxes, result.class_names = gt.xyxy.astype(np.float64), gt.class_names
                result.iscrowd, result.masks = np.zeros(len(gt), bool), gt.masks
                message = entry[truth.detections_topic]
                result.size = result.size or (int(message.image_width), int(message.image_height))
            if truth.class_map_topic:
                result.class_map = messages.mono8_to_array(entry[truth.class_map_topic])
        if result is None:
            counts.unlabelled += 1
            return None
        return frame, result

    index = shard.read_first_index
    topics = [shard.image_topic] + truth.topics
    for topic, bag_time, msg in reader.messages(topics, shard.read_start_ns, shard.read_stop_ns):
        stamp = messages.stamp_to_ns(msg.header.stamp)
        entry = pending.setdefault(stamp, {})
        if topic == shard.image_topic:
            entry["frame"] = Frame(index, stamp, bag_time, msg.header.frame_id, msg)
            index += 1
        else:
            entry[topic] = msg
        ready = []
        if "frame" in entry and wanted.issubset(entry):
            del pending[stamp]
            ready.append(entry)
        while len(pending) > PAIRING_WINDOW:
            ready.append(pending.popitem(last=False)[1])
        for done in ready:
            paired = emit(done) if "frame" in done else None
            if paired:
                yield paired
    for entry in pending.values():
        paired = emit(entry) if "frame" in entry else None
        if paired:
            yield paired


def score_shard(
    shard: Shard,
    predictions: PredictionSource,
    coco: Optional[CocoGroundTruth] = None,
    progress: Optional[Callable[[int], Any]] = None,
) -> ShardResult:
    """Read, pair and predict the frames of a shard: the worker's half of an evaluation.

    Args:
        shard: the frames to score.
        predictions: where predictions come from (loaded once, reused for every shard).
        coco: the bag's COCO ground truth, parsed (needed when ``shard.truth`` names a COCO file).
        progress: called with the number of frames read since its previous call.

    Raises:
        EvaluationError: the bag cannot be read, a frame's truth is for another image size, or
            the shard does not hold the frames it was planned with.
    """
    started_at, started = time.time(), time.perf_counter()
    counts = FrameCounts()
    segmentation = SegmentationAccumulator(shard.seg_classes) if shard.seg_classes else None
    records: List[FrameRecord] = []
    coco_images: Set[int] = set()
    first_timing = predictions.timing()
    keypoint_class = coco.keypoint_class if coco is not None and coco.keypoint_names else None
    reported = 0
    with BagReader(shard.bag, shard.allow_partial) as reader:
        for batch in _batches(paired_frames(reader, shard, coco, counts), predictions.batch_size):
            before = predictions.timing()
            predicted = predictions.predict([frame for frame, _ in batch])
            model_ms = _timing_since(before, predictions.timing()).get("model_s", 0.0) * 1e3 / len(batch)
            for (frame, truth), prediction in zip(batch, predicted):
                if truth.coco_image is not None:
                    coco_images.add(truth.coco_image)
                if prediction is None:
                    counts.without_prediction += 1
                    continue
                size = (prediction.width, prediction.height)
                if truth.size is not None and truth.size != size:
                    raise EvaluationError(
                        "ground truth of frame %d (stamp %d) on %s is %dx%d, but the frame is %dx%d"
                        % (frame.index, frame.stamp_ns, shard.image_topic, *truth.size, *size)
                    )
                if segmentation is not None and truth.class_map is not None and prediction.segmentation is not None:
                    segmentation.add(truth.class_map, prediction.segmentation.class_map)
                box_truth = shard.truth.has_boxes
                records.append(FrameRecord.build(frame, truth, prediction, box_truth, model_ms, keypoint_class))
            if progress is not None:
                progress(counts.frames - reported)
                reported = counts.frames
        damage = reader.damage_report(shard.image_topic, counts.frames)
    if progress is not None and counts.frames > reported:
        progress(counts.frames - reported)
    if counts.frames > shard.frames or (counts.frames < shard.frames and not shard.allow_partial):
        raise EvaluationError(
            "bag %s: expected %d frames on %s in %s, read %d"
            % (shard.bag, shard.frames, shard.image_topic, shard.describe(), counts.frames)
        )
    counts.evaluated = len(records)
    return ShardResult(
        shard,
        counts,
        records,
        segmentation,
        coco_images,
        _timing_since(first_timing, predictions.timing()),
        started_at,
        time.perf_counter() - started,
        "%s:%d" % (socket.gethostname(), os.getpid()),
        damage,
    )


def _timing_since(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Any]:
    """Model time spent between two :meth:`PredictionSource.timing` readings."""
    if not after:
        return {}
    stages = before.get("stage_ms", {})
    return {
        "model_s": after["model_s"] - before.get("model_s", 0.0),
        "stage_ms": {k: v - stages.get(k, 0.0) for k, v in after["stage_ms"].items()},
    }


def sum_timing(results: Sequence[ShardResult]) -> Dict[str, Any]:
    """The shards' model time added up (empty when no model ran)."""
    timed = [r.timing for r in results if r.timing]
    if not timed:
        return {}
    stages: Dict[str, float] = {}
    for timing in timed:
        for stage, ms in timing["stage_ms"].items():
            stages[stage] = stages.get(stage, 0.0) + ms
    return {"model_s": sum(t["model_s"] for t in timed), "stage_ms": stages}


class Evaluation:
    """Computes the metrics of shard results, once, wherever the shards were scored.

    The records of all shards are added in frame order (bag, then position on the topic),
    whatever order the shards finished in, so that a run spread over workers gives exactly the
    numbers of one pass over the bags.

    Args:
        class_names: evaluated detection classes; None when there is no detection ground truth.
        seg_labels: ``{id: name}`` of the segmentation classes; None without class-map truth.
        score_threshold: operating threshold for the confusion matrix and P/R/F1.
        iou_threshold: IoU a prediction needs to match a ground-truth box at the operating point.
        keypoints: ``(class name, keypoint names)`` of the keypoint ground truth, or None.
    Instance masks are scored when every frame with boxes has masks on both sides (see
    :meth:`FrameRecord.build`).
    """

    def __init__(
        self,
        class_names: Optional[Sequence[str]],
        seg_labels: Optional[LabelTable],
        score_threshold: float,
        iou_threshold: float = 0.5,
        keypoints: Optional[Tuple[str, Sequence[str]]] = None,
    ) -> None:
        self.class_names = list(class_names) if class_names else None
        self.class_index = {n: i for i, n in enumerate(self.class_names or [])}
        self.coco: Optional[CocoAccumulator] = None
        self.confusion = ConfusionAccumulator(self.class_names, iou_threshold, score_threshold) if class_names else None
        self.segmentation = None
        if seg_labels is not None:
            self.segmentation = SegmentationAccumulator(max(seg_labels) + 1, seg_labels)
        self.keypoints = KeypointAccumulator(*keypoints) if keypoints else None
        self.counts = FrameCounts()
        self.warnings: List[str] = []

    def add(self, results: Sequence[ShardResult]) -> None:
        """Add the results of every shard to score together (one bag's, or a whole fleet's), at once.

        Raises:
            EvaluationError: a ground-truth class is not among the evaluated ones.
        """
        for result in results:
            for name in ("frames", "evaluated", "unlabelled", "without_prediction"):
                setattr(self.counts, name, getattr(self.counts, name) + getattr(result.counts, name))
            if self.segmentation is not None and result.segmentation is not None:
                self.segmentation.merge(result.segmentation)
        keyed = [(r.shard.bag_index, record.index, record) for r in results for record in r.records]
        keyed.sort(key=lambda item: item[:2])
        boxed = [record for _, _, record in keyed if record.boxes is not None]
        if self.class_names is not None and boxed:
            masks = all(record.truth_masks is not None and record.masks is not None for record in boxed)
            self.coco = CocoAccumulator(self.class_names, masks=masks)
        for _, _, record in keyed:
            if self.class_names is not None and record.boxes is not None:
                self._add_detections(record)
            if self.keypoints is not None and record.keypoint_truth is not None:
                self.keypoints.add(
                    record.width,
                    record.height,
                    record.keypoint_boxes,
                    record.keypoint_truth,
                    record.keypoint_predictions,
                    record.keypoint_areas,
                    record.keypoint_crowd,
                )

    def _add_detections(self, record: FrameRecord) -> None:
        keep = np.array([n in self.class_index for n in record.names], bool).reshape(-1)
        self.counts.ignored_predictions += int((~keep).sum())
        names = [n for n, k in zip(record.names, keep) if k]
        pred_classes = np.array([self.class_index[n] for n in names], np.int64)
        unknown = [n for n in record.truth_names if n not in self.class_index]
        if unknown:
            raise EvaluationError(
                "ground truth: class %r is not among the evaluated classes %s" % (unknown[0], self.class_names)
            )
        gt_classes = np.array([self.class_index[n] for n in record.truth_names], np.int64)
        boxes, scores = record.boxes[keep], record.scores[keep]
        pred_masks = gt_masks = None
        if self.coco.masks:
            gt_masks = record.truth_masks
            pred_masks = [m for m, k in zip(record.masks, keep) if k]
        self.coco.add(
            record.width,
            record.height,
            record.truth_boxes,
            gt_classes,
            boxes,
            pred_classes,
            scores,
            gt_masks=gt_masks,
            pred_masks=pred_masks,
            gt_iscrowd=record.truth_crowd,
        )
        crowd = record.truth_crowd
        self.confusion.add(record.truth_boxes[~crowd], gt_classes[~crowd], boxes, pred_classes, scores)

    def warn(self, message: str) -> None:
        """Record a warning in the report and log it."""
        LOG.warning(message)
        self.warnings.append(message)

    def report(self, mode: str, model: str, source: Source, results: Sequence[ShardResult], wall_s: float) -> Report:
        """The report of the added results (see :meth:`metrics` for what it raises)."""
        counts = self.counts
        if counts.unlabelled:
            self.warn("%d of %d frames have no ground truth and were not scored" % (counts.unlabelled, counts.frames))
        detection, segmentation, keypoints = self.metrics()
        return Report(
            mode=mode,
            model=model,
            source=source,
            frames=counts,
            throughput=make_throughput(wall_s, counts, sum_timing(results)),
            warnings=self.warnings,
            detection=detection,
            segmentation=segmentation,
            keypoints=keypoints,
        )

    def metrics(self) -> Tuple[Optional[DetectionMetrics], Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        """``(detection, segmentation, keypoints)`` metrics.

        Raises:
            EvaluationError: no frame had both ground truth and a prediction, or nothing was scorable.
        """
        counts = self.counts
        if counts.evaluated == 0:
            raise EvaluationError(
                "evaluation: no frame had both ground truth and a prediction (%d frames read, %d unlabelled, "
                "%d without prediction)" % (counts.frames, counts.unlabelled, counts.without_prediction)
            )
        detection = segmentation = None
        if self.coco is not None:
            coco = self.coco.result()
            detection = DetectionMetrics(
                images=coco["images"],
                ground_truth_objects=coco["ground_truth_objects"],
                predictions=coco["predictions"],
                bbox=coco["bbox"],
                segm=coco.get("segm"),
                confusion=self.confusion.result(),
            )
        if self.segmentation is not None and self.segmentation.frames:
            segmentation = self.segmentation.result()
        keypoints = self.keypoints.result() if self.keypoints is not None else None
        if detection is None and segmentation is None:
            raise EvaluationError(
                "evaluation: the ground truth has nothing the predictions can be scored on "
                "(detections need boxes, segmentation needs class maps)"
            )
        return detection, segmentation, keypoints


def _default_class_names(
    bag,
    truth: GroundTruthSource,
    coco: Optional[CocoGroundTruth],
    info: PredictionInfo,
    allow_partial: bool,
) -> Optional[List[str]]:
    if not truth.has_boxes:
        return None
    if coco is not None:
        return coco.class_names
    if info.detection_labels:
        labels = info.detection_labels
        return [labels[k] for k in sorted(labels)]
    names = set()
    with BagReader(bag, allow_partial) as reader:
        for _, _, msg in reader.messages([truth.detections_topic]):
            names.update(str(d.class_name) for d in msg.detections)
    if not names:
        raise EvaluationError("ground truth topic %s holds no object; AP is undefined" % truth.detections_topic)
    return sorted(names)


@dataclass
class BagPlan:
    """A bag checked and ready to score: classes and thresholds resolved, frames split into shards.

    Attributes:
        bag, image_topic, truth: what is scored.
        coco: the parsed COCO ground truth, or None.
        class_names: evaluated detection classes, or None without box truth.
        seg_labels: segmentation classes, or None without class-map truth.
        score_threshold, iou_threshold: the operating point.
        frames: image messages on the topic.
        shards: the frames split into bag-time ranges, in bag order.
    """

    bag: str
    image_topic: str
    truth: GroundTruthSource
    coco: Optional[CocoGroundTruth]
    class_names: Optional[List[str]]
    seg_labels: Optional[LabelTable]
    score_threshold: float
    iou_threshold: float
    frames: int
    shards: List[Shard]


def plan_bag(
    bag,
    image_topic: str,
    truth: GroundTruthSource,
    info: PredictionInfo,
    scoring: Scoring,
    bag_index: int = 0,
    shard_frames: Optional[int] = None,
    allow_partial: bool = False,
) -> BagPlan:
    """Check a bag and its ground truth, resolve the scoring defaults and split the frames.

    Args:
        bag, image_topic, truth: what to score.
        info: the prediction source's labels and operating threshold (defaults of ``scoring``).
        scoring: classes and thresholds.
        bag_index: position of the bag in the run (orders the records of several bags).
        shard_frames: most frames per shard (about: shards are cut between distinct bag times);
            None keeps the bag in one shard.
        allow_partial: read what is readable of a damaged bag (see :class:`BagReader`); the bag
            then stays in one shard, since a damaged bag's index cannot be trusted to cut it.

    Raises:
        EvaluationError: as :func:`check_inputs`, or class-map truth without segmentation labels.
    """
    coco = check_inputs(bag, image_topic, truth, allow_partial)
    class_names = scoring.class_names or _default_class_names(bag, truth, coco, info, allow_partial)
    seg_labels = scoring.seg_labels
    if seg_labels is None and truth.class_map_topic:
        seg_labels = info.segmentation_labels
        if seg_labels is None:
            raise EvaluationError("evaluation: class-map ground truth needs the segmenter's labels, found none")
    score_threshold = scoring.score_threshold
    if score_threshold is None:
        score_threshold = info.score_threshold if info.score_threshold is not None else 0.5
    seg_classes = max(seg_labels) + 1 if seg_labels is not None and truth.class_map_topic else None
    with BagReader(bag, allow_partial) as reader:
        times = None if allow_partial else reader.message_times(image_topic)
        frames = reader.count(image_topic) if times is None else len(times)
    if times is None:
        shards = [Shard(str(bag), image_topic, truth, 0, frames, seg_classes=seg_classes, allow_partial=True)]
    else:
        whole = Shard(str(bag), image_topic, truth, 0, frames, seg_classes=seg_classes)
        shards = _time_range_shards(whole, times, shard_frames)
    for number, shard in enumerate(shards):
        shard.bag_index, shard.number = bag_index, number
    return BagPlan(
        str(bag),
        image_topic,
        truth,
        coco,
        class_names,
        seg_labels,
        score_threshold,
        scoring.iou_threshold,
        frames,
        shards,
    )


def _time_range_shards(whole: Shard, times: Sequence[int], shard_frames: Optional[int]) -> List[Shard]:
    """``whole`` (a bag's every frame) cut into bag-time ranges of about ``shard_frames`` frames,
    each reading :data:`PAIRING_WINDOW` frames more on each side when the truth is in topics."""
    pad = PAIRING_WINDOW if whole.truth.topics else 0
    shards = []
    for first, end in _shard_bounds(times, shard_frames):
        read_first, read_end = _cut(times, max(first - pad, 0)), _cut(times, min(end + pad, len(times)))
        shards.append(
            dataclasses.replace(
                whole,
                first_index=first,
                frames=end - first,
                read_start_ns=times[read_first] if read_first > 0 else None,
                read_stop_ns=times[read_end] if read_end < len(times) else None,
                read_first_index=read_first,
            )
        )
    return shards


def _shard_bounds(times: Sequence[int], shard_frames: Optional[int]) -> List[Tuple[int, int]]:
    """Frame index ranges ``[first, end)`` of about equal size, at most about ``shard_frames`` long,
    cut only between frames of different bag times (a bag-time range then holds exactly them)."""
    total = len(times)
    if not shard_frames or total <= shard_frames:
        return [(0, total)]
    count = -(-total // shard_frames)
    cuts = [0]
    for k in range(1, count):
        cut = _cut(times, max(k * total // count, cuts[-1] + 1))
        if cut >= total:
            break
        cuts.append(cut)
    cuts.append(total)
    return list(zip(cuts, cuts[1:]))


def _cut(times: Sequence[int], index: int) -> int:
    """The first index at or after ``index`` that starts a new bag time (frames sharing a bag time
    stay on one side of a cut, so a range of bag times holds exactly the frames between cuts)."""
    while 0 < index < len(times) and times[index] == times[index - 1]:
        index += 1
    return index


def bag_report(plan: BagPlan, results: Sequence[ShardResult], info: PredictionInfo, wall_s: float) -> Report:
    """The report of one bag from the results of its shards (the driver's half of an evaluation).

    Args:
        plan: the bag's plan.
        results: one result per shard of the plan.
        info: the prediction source's name and batch size.
        wall_s: seconds the bag took.

    Raises:
        EvaluationError: frames are missing or counted twice, the ground truth matched no frame,
            or nothing could be scored.
    """
    evaluation = Evaluation(
        plan.class_names, plan.seg_labels, plan.score_threshold, plan.iou_threshold, keypoint_truth(plan.coco)
    )
    evaluation.add(results)
    counts = evaluation.counts
    partial = any(shard.allow_partial for shard in plan.shards)
    lost = counts.frames > plan.frames or (counts.frames < plan.frames and not partial)
    if lost or len(results) != len(plan.shards):
        raise EvaluationError(
            "bag %s: expected %d frames on %s in %d shards, scored %d in %d"
            % (plan.bag, plan.frames, plan.image_topic, len(plan.shards), counts.frames, len(results))
        )
    for result in results:
        if result.damage:
            evaluation.warn(result.damage)
    coco = plan.coco
    if coco is not None:
        matched = set().union(*(r.coco_images for r in results))
        if not matched:
            raise EvaluationError(
                "ground truth %s: none of its %d images matches a frame of %s in %s (by ros_stamp_ns or frame_index)"
                % (coco.path, coco.num_images, plan.image_topic, plan.bag)
            )
        if len(matched) < coco.num_images:
            evaluation.warn(
                "ground truth %s: %d of %d labelled images match no frame of %s"
                % (coco.path, coco.num_images - len(matched), coco.num_images, plan.image_topic)
            )
    source = Source(
        bag=str(Path(plan.bag)),
        image_topic=plan.image_topic,
        ground_truth=plan.truth.describe(),
        score_threshold=plan.score_threshold,
        iou_threshold=plan.iou_threshold,
        batch_size=info.batch_size,
    )
    return evaluation.report("offline", info.name, source, results, wall_s)


def keypoint_truth(coco: Optional[CocoGroundTruth]) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """``(class name, keypoint names)`` of a COCO file's keypoint labels, or None."""
    return (coco.keypoint_class, tuple(coco.keypoint_names)) if coco is not None and coco.keypoint_names else None


def evaluate_bag(
    bag,
    image_topic: str,
    truth: GroundTruthSource,
    predictions: PredictionSource,
    scoring: Optional[Scoring] = None,
    progress: Optional[bool] = None,
    allow_partial: bool = False,
) -> Report:
    """Score predictions on every labelled frame of a bag, in this process.

    Args:
        bag: path of the ROS 1 bag.
        image_topic: ``sensor_msgs/Image`` or ``CompressedImage`` topic to evaluate.
        truth: the ground truth.
        predictions: the model run here, or the recorded outputs of a node.
        scoring: classes and thresholds (defaults: see :class:`Scoring`).
        progress: show a tqdm bar (default: when stderr is a terminal).
        allow_partial: evaluate the readable frames of a damaged bag; the report's warnings say
            how many were lost.

    Returns:
        The offline report (mode ``offline``; the live evaluation adds its statistics).

    Raises:
        EvaluationError: missing topic, empty bag, ground truth that matches no frame, nothing to score.
    """
    info = predictions.info()
    plan = plan_bag(bag, image_topic, truth, info, scoring or Scoring(), allow_partial=allow_partial)
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    with tqdm(total=plan.frames, unit="frame", disable=not show, desc="evaluate") as bar:
        results = [score_shard(shard, predictions, plan.coco, bar.update) for shard in plan.shards]
    return bag_report(plan, results, info, time.perf_counter() - started)


def make_throughput(elapsed: float, counts: FrameCounts, timing: Dict[str, Any]) -> Throughput:
    """Wall and model time of a run as a :class:`Throughput` (``timing`` as :func:`sum_timing`)."""
    out = Throughput(wall_s=elapsed, frames_per_s=counts.frames / elapsed if elapsed else None)
    if timing:
        out.model_s = timing["model_s"]
        out.model_frames_per_s = counts.evaluated / out.model_s if out.model_s else None
        out.stage_ms_mean = {k: v / max(counts.evaluated, 1) for k, v in timing["stage_ms"].items()}
    return out


def _batches(items: Iterator[Any], size: int) -> Iterator[List[Any]]:
    batch: List[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
