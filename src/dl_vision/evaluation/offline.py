"""Offline evaluation: read a bag with rosbags (no ROS master), predict every frame, score it.

Predictions come from a :class:`~dl_vision.evaluation.predictions.PredictionSource`: a model run
here through the node's frame processor, or outputs a node published, recorded in a bag (what
the live evaluation does). Frames stream through: the bag is read chunk by chunk, ground-truth
topics are paired with their frames in a small window, and the metric accumulators keep only
annotations and pixel counts, so memory stays flat however long the bag is.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from dl_vision import messages
from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import DETECTION_ARRAY, IMAGE, IMAGE_TYPES, BagReader, Frame
from dl_vision.evaluation.coco_metrics import CocoAccumulator
from dl_vision.evaluation.confusion import ConfusionAccumulator
from dl_vision.evaluation.ground_truth import CocoGroundTruth, FrameTruth
from dl_vision.evaluation.keypoint_metrics import KeypointAccumulator
from dl_vision.evaluation.predictions import Prediction, PredictionSource
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


class Evaluation:
    """Accumulates one evaluation run: metrics, frame counts and warnings.

    Args:
        class_names: evaluated detection classes; None when there is no detection ground truth.
        seg_labels: ``{id: name}`` of the segmentation classes; None without class-map truth.
        score_threshold: operating threshold for the confusion matrix and P/R/F1.
        iou_threshold: IoU a prediction needs to match a ground-truth box at the operating point.
        keypoints: ``(class name, keypoint names)`` of the keypoint ground truth, or None.
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

    def add(self, truth: FrameTruth, prediction: Prediction) -> None:
        """Score one frame's prediction against its truth."""
        self.counts.evaluated += 1
        if self.class_names is not None and prediction.detections is not None:
            self._add_detections(truth, prediction.width, prediction.height, prediction.detections)
        if self.keypoints is not None and truth.keypoints is not None and prediction.detections is not None:
            wanted = np.array([n == self.keypoints.class_name for n in truth.class_names], bool).reshape(-1)
            areas = None if truth.masks is None else truth.masks[wanted].sum(axis=(1, 2))
            self.keypoints.add(
                prediction.width,
                prediction.height,
                truth.boxes[wanted],
                truth.keypoints[wanted],
                prediction.detections,
                areas,
                truth.iscrowd[wanted],
            )
        if self.segmentation is not None and truth.class_map is not None and prediction.segmentation is not None:
            self.segmentation.add(truth.class_map, prediction.segmentation.class_map)

    def _add_detections(self, truth: FrameTruth, width: int, height: int, dets: Detections) -> None:
        keep = np.array([n in self.class_index for n in dets.class_names], bool).reshape(-1)
        self.counts.ignored_predictions += int((~keep).sum())
        dets = dets[keep]
        pred_classes = np.array([self.class_index[n] for n in dets.class_names], np.int64)
        unknown = [n for n in truth.class_names if n not in self.class_index]
        if unknown:
            raise EvaluationError(
                "ground truth: class %r is not among the evaluated classes %s" % (unknown[0], self.class_names)
            )
        gt_classes = np.array([self.class_index[n] for n in truth.class_names], np.int64)
        if self.coco is None:
            self.coco = CocoAccumulator(self.class_names, masks=truth.masks is not None and dets.masks is not None)
        pred_masks = gt_masks = None
        if self.coco.masks:
            gt_masks = truth.masks
            pred_masks = dets.masks if dets.masks is not None else np.zeros((0, height, width), bool)
        self.coco.add(
            width,
            height,
            truth.boxes,
            gt_classes,
            dets.xyxy,
            pred_classes,
            dets.score,
            gt_masks=gt_masks,
            pred_masks=pred_masks,
            gt_iscrowd=truth.iscrowd,
        )
        crowd = truth.iscrowd
        self.confusion.add(truth.boxes[~crowd], gt_classes[~crowd], dets.xyxy, pred_classes, dets.score)

    def warn(self, message: str) -> None:
        """Record a warning in the report and log it."""
        LOG.warning(message)
        self.warnings.append(message)

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


def paired_frames(
    reader: BagReader,
    image_topic: str,
    truth: GroundTruthSource,
    coco: Optional[CocoGroundTruth],
    counts: FrameCounts,
) -> Iterator[Tuple[Frame, FrameTruth]]:
    """Frames of ``image_topic`` (undecoded) with their ground truth, in bag order.

    Ground-truth messages are matched by header stamp within :data:`PAIRING_WINDOW` frames;
    frames read and frames without truth are counted in ``counts``.
    """
    pending: "OrderedDict[int, Dict[str, Any]]" = OrderedDict()
    wanted = set(truth.topics)

    def emit(entry: Dict[str, Any]) -> Optional[Tuple[Frame, FrameTruth]]:
        frame = entry["frame"]
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

    index = 0
    for topic, bag_time, msg in reader.messages([image_topic] + truth.topics):
        stamp = messages.stamp_to_ns(msg.header.stamp)
        entry = pending.setdefault(stamp, {})
        if topic == image_topic:
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


def _default_class_names(
    bag,
    truth: GroundTruthSource,
    coco: Optional[CocoGroundTruth],
    predictions: PredictionSource,
    allow_partial: bool,
) -> Optional[List[str]]:
    if coco is None and not truth.detections_topic:
        return None
    if coco is not None:
        return coco.class_names
    if predictions.detection_labels:
        labels = predictions.detection_labels
        return [labels[k] for k in sorted(labels)]
    names = set()
    with BagReader(bag, allow_partial) as reader:
        for _, _, msg in reader.messages([truth.detections_topic]):
            names.update(str(d.class_name) for d in msg.detections)
    if not names:
        raise EvaluationError("ground truth topic %s holds no object; AP is undefined" % truth.detections_topic)
    return sorted(names)


def evaluate_bag(
    bag,
    image_topic: str,
    truth: GroundTruthSource,
    predictions: PredictionSource,
    scoring: Optional[Scoring] = None,
    progress: Optional[bool] = None,
    allow_partial: bool = False,
) -> Report:
    """Score predictions on every labelled frame of a bag.

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
    scoring = scoring or Scoring()
    coco = check_inputs(bag, image_topic, truth, allow_partial)
    class_names = scoring.class_names or _default_class_names(bag, truth, coco, predictions, allow_partial)
    seg_labels = scoring.seg_labels
    if seg_labels is None and truth.class_map_topic:
        seg_labels = predictions.segmentation_labels
        if seg_labels is None:
            raise EvaluationError("evaluation: class-map ground truth needs the segmenter's labels, found none")
    score_threshold = scoring.score_threshold
    if score_threshold is None:
        score_threshold = predictions.score_threshold if predictions.score_threshold is not None else 0.5
    keypoint_truth = (coco.keypoint_class, coco.keypoint_names) if coco is not None and coco.keypoint_names else None
    evaluation = Evaluation(class_names, seg_labels, score_threshold, scoring.iou_threshold, keypoint_truth)
    counts = evaluation.counts
    started = time.perf_counter()
    with BagReader(bag, allow_partial) as reader:
        show = sys.stderr.isatty() if progress is None else progress
        with tqdm(total=reader.count(image_topic), unit="frame", disable=not show, desc="evaluate") as bar:
            for batch in _batches(paired_frames(reader, image_topic, truth, coco, counts), predictions.batch_size):
                for (frame, frame_truth), predicted in zip(batch, predictions.predict([f for f, _ in batch])):
                    if predicted is None:
                        counts.without_prediction += 1
                        continue
                    size = (predicted.width, predicted.height)
                    if frame_truth.size is not None and frame_truth.size != size:
                        raise EvaluationError(
                            "ground truth of frame %d (stamp %d) on %s is %dx%d, but the frame is %dx%d"
                            % (frame.index, frame.stamp_ns, image_topic, *frame_truth.size, *size)
                        )
                    evaluation.add(frame_truth, predicted)
                bar.n = counts.frames
                bar.update(0)
        damage = reader.damage_report(image_topic, counts.frames)
    if damage:
        evaluation.warn(damage)
    elapsed = time.perf_counter() - started
    if coco is not None:
        if not coco.matched_images:
            raise EvaluationError(
                "ground truth %s: none of its %d images matches a frame of %s in %s (by ros_stamp_ns or frame_index)"
                % (coco.path, coco.num_images, image_topic, bag)
            )
        if coco.unmatched():
            evaluation.warn(
                "ground truth %s: %d of %d labelled images match no frame of %s"
                % (coco.path, coco.unmatched(), coco.num_images, image_topic)
            )
    if counts.unlabelled:
        evaluation.warn("%d of %d frames have no ground truth and were not scored" % (counts.unlabelled, counts.frames))
    detection, segmentation, keypoints = evaluation.metrics()
    return Report(
        mode="offline",
        model=predictions.name,
        source=Source(
            bag=str(Path(bag)),
            image_topic=image_topic,
            ground_truth=truth.describe(),
            score_threshold=score_threshold,
            iou_threshold=scoring.iou_threshold,
            batch_size=predictions.batch_size,
        ),
        frames=counts,
        throughput=_throughput(elapsed, counts, predictions.timing()),
        warnings=evaluation.warnings,
        detection=detection,
        segmentation=segmentation,
        keypoints=keypoints,
    )


def _throughput(elapsed: float, counts: FrameCounts, timing: Dict[str, Any]) -> Throughput:
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
