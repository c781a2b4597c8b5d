"""The real face model on a sample bag made from scikit-image photos, ground truth = the shared
hand-annotated face box: offline evaluation (no ROS master) and live evaluation (roslaunch, the
detector node, rosbag play --clock) must report the same metrics; live adds latency and drops.

The live test needs the catkin workspace sourced (``roslaunch`` must find ``dl_vision``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dl_vision import assets
from dl_vision.evaluation.bag_building import make_eval_bag
from dl_vision.evaluation.offline import GroundTruthSource, Scoring, evaluate_bag
from dl_vision.evaluation.predictions import ModelPredictions
from dl_vision.evaluation.report import headline_metrics
from dl_vision.frame_processor import FrameProcessor
from dl_vision.pipeline import Detector, Segmenter

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "astronaut_reference.yaml"
DETECTOR_PARAMS = Path(__file__).resolve().parents[2] / "config" / "detector.yaml"
TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A 5-frame bag: astronaut, two photos without a human face, astronaut mirrored, rocket."""
    root = tmp_path_factory.mktemp("sample")
    (root / "images").mkdir()
    face = yaml.safe_load(REFERENCE.read_text())["faces"][0]
    astronaut = cv2.imread(str(assets.fetch("astronaut")))
    width = astronaut.shape[1]
    mirrored_face = [width - face[2], face[1], width - face[0], face[3]]
    frames = [
        ("astronaut", astronaut, [face]),
        ("coffee", None, []),
        ("chelsea", None, []),
        ("mirrored", cv2.flip(astronaut, 1), [mirrored_face]),
        ("rocket", None, []),
    ]
    images, anns = [], []
    for i, (name, image, faces) in enumerate(frames):
        image = cv2.imread(str(assets.fetch(name))) if image is None else image
        file_name = "%02d_%s.png" % (i, name)
        cv2.imwrite(str(root / "images" / file_name), image)
        images.append({"id": i + 1, "file_name": file_name})
        for x0, y0, x1, y1 in faces:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                }
            )
    coco = root / "annotations.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}))
    made = make_eval_bag(root / "images", root / "sample.bag", TOPIC, coco, rate_hz=5.0)
    assert made["frames"] == 5 and made["labelled"] == 5
    make_eval_bag(
        root / "images",
        root / "compressed.bag",
        TOPIC + "/compressed",
        coco,
        rate_hz=5.0,
        gt_json=root / "compressed.gt.json",
        compressed="png",
    )
    # Rough person class maps (the face box widened to the shoulders and down to the bottom):
    # enough for live and offline to be compared on the same truth, not an accuracy claim.
    (root / "class_maps").mkdir()
    for entry, (_, _, faces) in zip(images, frames):
        class_map = np.zeros(cv2.imread(str(root / "images" / entry["file_name"])).shape[:2], np.uint8)
        for x0, y0, x1, _ in faces:
            class_map[int(y0) :, max(0, int(x0) - 80) : int(x1) + 80] = 1
        cv2.imwrite(str(root / "class_maps" / (entry["file_name"][:-4] + ".png")), class_map)
    made_seg = make_eval_bag(
        root / "images", root / "segmentation.bag", TOPIC, rate_hz=5.0, gt_topic=None, class_maps=root / "class_maps"
    )
    assert made_seg["class_maps"] == 5
    return root / "sample.bag", Path(made["ground_truth"])


class AnsweredOnly(ModelPredictions):
    """The model run here, on exactly the frames the live node answered (the others: no prediction)."""

    def __init__(self, processor: FrameProcessor, answered) -> None:
        super().__init__(processor, batch_size=1)
        self.answered = answered

    def predict(self, frames):
        return [super(AnsweredOnly, self).predict([f])[0] if f.stamp_ns in self.answered else None for f in frames]


def comparable(report):
    """Headline metrics that do not depend on timing."""
    return {
        k: v
        for k, v in headline_metrics(report).items()
        if k not in ("fps", "dropped_fraction") and not k.startswith("latency")
    }


def test_offline_face_model_finds_the_annotated_faces(sample):
    bag, gt = sample
    processor = FrameProcessor(Detector.from_spec("face"))
    report = evaluate_bag(bag, TOPIC, GroundTruthSource(coco_json=gt), ModelPredictions(processor, 4), progress=False)
    metrics = headline_metrics(report)
    # The reference promises IoU >= 0.7, i.e. hits at IoU thresholds 0.50 .. 0.70: mAP >= 0.5.
    assert metrics["AP50"] == 1.0 and metrics["mAP"] >= 0.5
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0  # no face on the other photos
    assert report.frames.evaluated == 5 and report.model == "face"
    assert report.throughput.stage_ms_mean["detector/inference"] > 0
    # Batches of 4 (a full and a partial one) score exactly like frame-by-frame prediction.
    single = evaluate_bag(bag, TOPIC, GroundTruthSource(coco_json=gt), ModelPredictions(processor, 1), progress=False)
    assert headline_metrics(single)["mAP"] == metrics["mAP"]
    # In-bag ground truth (DetectionArray topic written by make_eval_bag) gives the same scores.
    in_bag = evaluate_bag(
        bag,
        TOPIC,
        GroundTruthSource(detections_topic="/ground_truth/detections"),
        ModelPredictions(processor),
        progress=False,
    )
    assert comparable(in_bag) == comparable(report)


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_live_agrees_with_offline_and_reports_latency(sample, tmp_path, transport, activated_env):
    from dl_vision.evaluation.live import LiveSettings, run_live

    bag, gt = sample
    topic = TOPIC
    if transport == "compressed":
        bag, gt, topic = bag.parent / "compressed.bag", bag.parent / "compressed.gt.json", TOPIC + "/compressed"
    truth = GroundTruthSource(coco_json=gt)
    live = run_live(bag, topic, truth, tmp_path / "live", LiveSettings(model="face", rate=1.0, timeout_s=180))
    assert live.mode == "live" and live.live.received_frames == 5
    processed = live.live.processed
    assert processed + live.live.dropped == 5
    assert processed >= 1 and live.frames.evaluated == processed
    # Offline on exactly the frames the node processed (all of them at 5 Hz, unless the machine
    # stalled) must score the same: same model, same options, same frames.
    timing = json.loads((tmp_path / "live" / "live_timing.json").read_text())
    answered = {int(s) for s in timing["outputs"]["/eval_vision/detections"]}
    detector = Detector.from_spec("face")
    detector.options.max_detections = yaml.safe_load(DETECTOR_PARAMS.read_text())["detector"]["max_detections"]
    offline = evaluate_bag(bag, topic, truth, AnsweredOnly(FrameProcessor(detector), answered), progress=False)
    assert comparable(live) == pytest.approx(comparable(offline))
    assert live.detection.confusion["matrix"] == offline.detection.confusion["matrix"]
    latency = live.live.latency_ms
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert np.isfinite(live.live.output_rate_hz)
    assert (tmp_path / "live" / "live_outputs.bag").is_file()


def test_live_segmentation_agrees_with_offline(sample, tmp_path, activated_env):
    from dl_vision.evaluation.live import LiveSettings, run_live

    bag = sample[0].parent / "segmentation.bag"
    truth = GroundTruthSource(class_map_topic="/ground_truth/class_map")
    live = run_live(bag, TOPIC, truth, tmp_path / "live", LiveSettings(task="segment", timeout_s=180))
    assert live.live.received_frames == 5 and live.live.latency_ms["p50"] > 0
    timing = json.loads((tmp_path / "live" / "live_timing.json").read_text())
    answered = {int(s) for s in timing["outputs"]["/eval_vision/class_map"]}
    segmenter = Segmenter.from_spec("person_segmentation")
    offline = evaluate_bag(
        bag, TOPIC, truth, AnsweredOnly(FrameProcessor(None, segmenter), answered), Scoring(), progress=False
    )
    assert live.segmentation["confusion"] == offline.segmentation["confusion"]
    assert comparable(live) == pytest.approx(comparable(offline))
