"""Fleet evaluation in this process, on bags written in tmp_path with recorded predictions: split
bags score exactly like one pass, pooled metrics equal those of one bag holding every frame, an
unusable bag is its own error, rows sort worst first, compare_reports finds the regressed bag,
and the bag arguments (folders, globs, --gt patterns, manifests) resolve as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
from rosbags.rosbag1 import Reader
from test_offline_evaluation import BOX, LABELS, PERIOD, START, coco_json, dets, write_bag

from dl_vision.errors import EvaluationError
from dl_vision.evaluation import offline
from dl_vision.evaluation.bag_io import BagWriter, Frame
from dl_vision.evaluation.cli import compare_reports_main
from dl_vision.evaluation.fleet import BagInput, LocalExecutor, bag_inputs, evaluate_fleet, read_manifest
from dl_vision.evaluation.fleet_report import bag_regressions, compare_bags, write_fleet_report
from dl_vision.evaluation.offline import GroundTruthSource, Scoring, evaluate_bag
from dl_vision.evaluation.predictions import ModelSettings, Prediction, PredictionSource, RecordedPredictions
from dl_vision.spec import load_spec
from dl_vision.structures import Detections

SEG_LABELS = {0: "background", 1: "person"}
MODELS = Path(__file__).resolve().parents[2] / "config" / "models"


class RecordedFleet(PredictionSource):
    """What nodes published into several bags (stamps differ between bags), looked up by stamp."""

    def __init__(self, bags: Sequence, topic: str = "/pred", class_map_topic: Optional[str] = None) -> None:
        self.name = "recorded"
        self.batch_size = 3
        self.detection_labels = LABELS if topic else None
        self.segmentation_labels = SEG_LABELS if class_map_topic else None
        self._by_stamp: Dict[int, Prediction] = {}
        for bag in bags:
            recorded = RecordedPredictions(bag, topic, class_map_topic, LABELS, SEG_LABELS)
            self._by_stamp.update(recorded._by_stamp)

    def predict(self, frames: Sequence[Frame]) -> List[Optional[Prediction]]:
        return [self._by_stamp.get(frame.stamp_ns) for frame in frames]


def write_varied(writer: BagWriter, frames: int, seed: int, first: int = 0, truth_lag: int = 0, class_maps=False):
    """Frames whose predictions hit, shift, miss and invent boxes at random; frame i is stamped
    START + (first + i) * PERIOD; ground truth is recorded ``truth_lag`` frames after its frame."""
    rng = np.random.default_rng(seed)
    for i in range(frames):
        stamp = START + (first + i) * PERIOD
        writer.write_image("/cam", stamp, np.full((120, 160, 3), i % 256, np.uint8))
        truth = dets(BOX + rng.integers(-20, 20, 4), [int(rng.integers(0, 2))])
        shift = rng.normal(0, 4, (1, 4)).astype(np.float32)
        kind = rng.integers(0, 5)
        if kind == 0:
            pred = Detections.empty(LABELS)
        elif kind == 1:
            boxes = np.concatenate([truth.xyxy + shift, [[0, 0, 30, 30]]])
            pred = dets(boxes, [truth.class_id[0], 1], [0.8, 0.7])
        else:
            pred = dets(truth.xyxy + shift, truth.class_id, [float(rng.uniform(0.3, 1.0))])
        writer.write_detections("/pred", stamp, pred, 160, 120)
        writer.write_detections("/gt", stamp, truth, 160, 120, bag_time_ns=stamp + truth_lag * PERIOD)
        if class_maps:
            gt_map = (rng.random((120, 160)) < 0.3).astype(np.uint8)
            pred_map = np.where(rng.random((120, 160)) < 0.8, gt_map, 1 - gt_map).astype(np.uint8)
            writer.write_class_map("/gt_classes", stamp, gt_map, bag_time_ns=stamp + truth_lag * PERIOD)
            writer.write_class_map("/pred_classes", stamp, pred_map)


def varied_bag(path, frames: int, seed: int, **options):
    """A bag of :func:`write_varied` frames."""
    with BagWriter(path) as writer:
        write_varied(writer, frames, seed, **options)
    return path


def scores(report) -> dict:
    """Everything in a report but timing."""
    data = report.to_dict()
    for key in ("throughput", "source"):
        data.pop(key)
    return data


def fleet(bags: Sequence[BagInput], predictions: PredictionSource, **options):
    return evaluate_fleet(bags, LocalExecutor(predictions), Scoring(), progress=False, **options)


@pytest.mark.parametrize("truth_kind", ["topic", "coco_stamp", "coco_index", "class_maps"])
def test_a_bag_split_into_time_ranges_scores_exactly_like_one_pass(tmp_path, monkeypatch, truth_kind):
    # A pairing window of 8 frames, so that the shards' read ranges (8 frames more each way) are
    # cut from the bag; the truth is recorded 3 frames late, so that pairs cross shard boundaries.
    monkeypatch.setattr(offline, "PAIRING_WINDOW", 8)
    bag = varied_bag(tmp_path / "b.bag", 40, seed=1, truth_lag=3, class_maps=truth_kind == "class_maps")
    truth = GroundTruthSource(detections_topic="/gt")
    if truth_kind.startswith("coco"):
        boxes = [[((BOX[0] + i % 7).tolist(), i % 2)] for i in range(40)]
        truth = GroundTruthSource(coco_json(tmp_path / "gt.json", 40, boxes, key=truth_kind[5:]))
    elif truth_kind == "class_maps":
        truth = GroundTruthSource(detections_topic="/gt", class_map_topic="/gt_classes")
    predictions = RecordedFleet([bag], class_map_topic="/pred_classes" if truth_kind == "class_maps" else None)
    one_pass = evaluate_bag(bag, "/cam", truth, predictions, progress=False)
    run = fleet([BagInput(str(bag), "/cam", truth, "b")], predictions, shard_frames=7)
    assert run.report.execution["shards"] == 6
    assert scores(run.bag_reports["b"]) == scores(one_pass)
    assert one_pass.frames.frames == 40 and one_pass.frames.evaluated == 40
    if truth_kind == "class_maps":
        assert one_pass.segmentation["frames"] == 40


def test_pooled_metrics_equal_one_bag_holding_every_frame(tmp_path):
    sizes, seeds = (13, 9, 17), (4, 5, 6)
    firsts = [sum(sizes[:k]) for k in range(3)]
    parts = [varied_bag(tmp_path / ("part%d.bag" % k), sizes[k], seeds[k], first=firsts[k]) for k in range(3)]
    whole = tmp_path / "all.bag"
    with BagWriter(whole) as writer:
        for k in range(3):
            write_varied(writer, sizes[k], seeds[k], first=firsts[k])
    truth = GroundTruthSource(detections_topic="/gt")
    predictions = RecordedFleet(parts)
    run = fleet([BagInput(str(p), "/cam", truth, p.stem) for p in parts], predictions, shard_frames=5)
    single = evaluate_bag(whole, "/cam", truth, predictions, progress=False)
    pooled = run.report.overall
    assert pooled.mode == "fleet" and pooled.frames == single.frames and pooled.frames.frames == 39
    assert pooled.detection == single.detection
    for part in parts:
        alone = evaluate_bag(part, "/cam", truth, predictions, progress=False)
        assert scores(run.bag_reports[part.stem]) == scores(alone)
        assert run.report.row(part.stem).metrics["mAP"] == alone.detection.bbox["mAP"]


def test_an_unusable_bag_is_its_own_error_and_the_rest_is_scored(tmp_path):
    good = [varied_bag(tmp_path / ("good%d.bag" % k), 6, seed=k, first=10 * k) for k in range(2)]
    (tmp_path / "garbage.bag").write_bytes(bytes(range(256)) * 20)
    # A damaged chunk behind an intact index: found by the worker while reading, not by the checks.
    damaged = varied_bag(tmp_path / "damaged.bag", 4, seed=8, first=40)
    reader = Reader(damaged)
    reader.open()
    (camera,) = [c for c in reader.connections if c.topic == "/cam"]
    third = reader.indexes[camera.id][2]  # the third frame's record: zero its header
    position = reader.chunks[third.chunk_pos].datapos + third.offset
    reader.close()
    data = bytearray(damaged.read_bytes())
    data[position : position + 64] = bytes(64)
    damaged.write_bytes(bytes(data))
    # Truth for 320x240 images on 160x120 frames: also found by the worker.
    wrong_size = varied_bag(tmp_path / "wrong_size.bag", 4, seed=7, first=50)
    gt = coco_json(tmp_path / "wrong.json", 4, [[(BOX[0].tolist(), 0)]] * 4, key="index")
    data = json.loads(gt.read_text())
    for image in data["images"]:
        image.update(width=320, height=240)
    gt.write_text(json.dumps(data))
    topic_truth = GroundTruthSource(detections_topic="/gt")
    bags = [BagInput(str(p), "/cam", topic_truth, p.stem) for p in good]
    bags += [
        BagInput(str(tmp_path / "garbage.bag"), "/cam", topic_truth, "garbage"),
        BagInput(str(tmp_path / "missing.bag"), "/cam", topic_truth, "missing"),
        BagInput(str(damaged), "/cam", topic_truth, "damaged"),
        BagInput(str(wrong_size), "/cam", GroundTruthSource(gt), "wrong_size"),
    ]
    predictions = RecordedFleet(good + [damaged, wrong_size])
    run = fleet(bags, predictions, shard_frames=4)
    rows = {r.name: r for r in run.report.bags}
    assert [r.name for r in run.report.bags[:4]] == ["damaged", "garbage", "missing", "wrong_size"]  # failed first
    assert "damaged.bag: damaged after 4 messages" in rows["damaged"].error and rows["damaged"].frames == 4
    assert "expected a ROS 1 bag" in rows["garbage"].error and "found nothing" in rows["missing"].error
    assert "is 320x240, but the frame is 160x120" in rows["wrong_size"].error and rows["wrong_size"].metrics == {}
    assert sorted(run.bag_reports) == ["good0", "good1"]
    assert sum("not scored" in w for w in run.report.warnings) == 4
    scored_only = fleet(bags[:2], predictions, shard_frames=4)
    assert scores(run.report.overall) == scores(scored_only.report.overall)
    with pytest.raises(EvaluationError, match="bag garbage: bag .*garbage.bag: expected a ROS 1 bag"):
        fleet(bags, predictions, strict=True)
    # --allow-partial: the damaged bag's readable frames are scored and its report says what was lost.
    partial = fleet(bags, predictions, shard_frames=4, allow_partial=True)
    damaged = partial.bag_reports["damaged"]
    assert damaged.frames.frames == 2 and any("is damaged (--allow-partial)" in w for w in damaged.warnings)
    assert partial.report.row("damaged").error is None and partial.report.row("garbage").error


def test_rows_sort_worst_first_and_compare_reports_names_the_regressed_bag(tmp_path, capsys):
    bags = [varied_bag(tmp_path / ("site%d.bag" % k), 8, seed=10 + k, first=20 * k) for k in range(3)]
    truth = GroundTruthSource(detections_topic="/gt")
    inputs = [BagInput(str(p), "/cam", truth, p.stem) for p in bags]
    baseline = fleet(inputs, RecordedFleet(bags))
    maps = {r.name: r.metrics["mAP"] for r in baseline.report.bags}
    assert [r.name for r in baseline.report.bags] == sorted(maps, key=maps.get)
    # The candidate: the truth itself as predictions, except on site1 where boxes move 12 px.
    for k, bag in enumerate(bags):
        with BagWriter(tmp_path / ("cand%d.bag" % k)) as writer:
            for _, _, msg in _read(bag, "/gt"):
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                truth_dets = dets([[d.x_min, d.y_min, d.x_max, d.y_max] for d in msg.detections], [0])
                truth_dets = dets(truth_dets.xyxy + (12 if k == 1 else 0), [d.class_id for d in msg.detections])
                writer.write_image("/cam", stamp, np.zeros((120, 160, 3), np.uint8))
                writer.write_detections("/pred", stamp, truth_dets, 160, 120)
    candidate = fleet(inputs, RecordedFleet([tmp_path / ("cand%d.bag" % k) for k in range(3)]))
    deltas = compare_bags(baseline.report, candidate.report, "mAP")
    assert deltas[0].name == "site1" and deltas[0].delta < 0 < deltas[1].delta
    assert [f.split(":")[0] for f in bag_regressions(deltas, "mAP", 0.01)] == ["bag site1"]
    write_fleet_report(baseline.report, baseline.bag_reports, tmp_path / "base")
    files = write_fleet_report(candidate.report, candidate.bag_reports, tmp_path / "cand")
    assert "| site1 |" in files["markdown"].read_text() and (tmp_path / "cand/bags/site1/report.json").is_file()
    status = compare_reports_main([str(tmp_path / "base"), str(tmp_path / "cand"), "--max-bag-drop", "mAP=0.01"])
    out, err = capsys.readouterr()
    assert status == 1 and "FAIL bag site1: mAP dropped by" in err and "site0" not in err
    assert out.index("| site1 |") < out.index("| site0 |")
    assert compare_reports_main([str(tmp_path / "base"), str(tmp_path / "cand"), "--max-bag-drop", "mAP=0.9"]) == 0


def _read(bag, topic):
    from dl_vision.evaluation.bag_io import BagReader

    with BagReader(bag) as reader:
        return list(reader.messages([topic]))


def test_bag_arguments_folders_globs_truth_patterns_and_manifests(tmp_path):
    for name in ("a/x.bag", "a/y.bag", "b/z.bag"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    bags = bag_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "*.bag")], "/cam", "{dir}/{stem}.gt.json")
    assert [b.name for b in bags] == ["a/x.bag", "a/y.bag", "b/z.bag"]
    assert bags[2].truth.coco_json == str(tmp_path / "b" / "z.gt.json")
    (tmp_path / "labels").mkdir()
    assert bag_inputs([str(tmp_path / "a")], "/cam", str(tmp_path / "labels"))[1].truth.coco_json == str(
        tmp_path / "labels" / "y.gt.json"
    )
    for patterns, gt, message in [
        ([str(tmp_path / "a"), str(tmp_path / "a" / "x.bag")], None, "listed twice"),
        ([str(tmp_path / "none" / "*.bag")], None, "found none"),
        ([str(tmp_path / "a")], str(tmp_path / "one.json"), "one ground truth per bag for 2 bags"),
    ]:
        with pytest.raises(EvaluationError, match=message):
            bag_inputs(patterns, "/cam", gt, detections_topic=None if gt else "/gt")
    manifest = tmp_path / "fleet.yaml"
    manifest.write_text(
        "topic: /front/image_raw\n"
        "bags:\n"
        "  - {bag: a/x.bag, gt: a/x.gt.json}\n"
        "  - {bag: b/z.bag, gt_topic: /gt, topic: /rear/image_raw, name: rear}\n"
    )
    listed = read_manifest(manifest, "/camera/image_raw")
    assert [(b.name, b.topic) for b in listed] == [("a/x.bag", "/front/image_raw"), ("rear", "/rear/image_raw")]
    assert listed[0].truth.coco_json == str(tmp_path / "a" / "x.gt.json") and listed[1].truth.detections_topic == "/gt"
    manifest.write_text("bags:\n  - {bag: a/x.bag, gt: x.json, camera: front}\n")
    with pytest.raises(EvaluationError, match=r"entry 1: unknown keys \['camera'\]"):
        read_manifest(manifest, "/cam")
    manifest.write_text("bags:\n  - {bag: a/x.bag}\n")
    with pytest.raises(EvaluationError, match="expected a COCO JSON file or a ground-truth topic"):
        read_manifest(manifest, "/cam")


def _evaluate_in_child(args: List[str], hide_ray: bool = False) -> subprocess.CompletedProcess:
    """``evaluate`` in a fresh interpreter; prints whether Ray was imported."""
    code = (
        "import sys\n"
        + ("sys.modules['ray'] = None\n" if hide_ray else "")
        + "from dl_vision.evaluation.cli import evaluate_main\n"
        "status = evaluate_main(sys.argv[1:])\n"
        "print('ray imported:', 'ray' in sys.modules and sys.modules['ray'] is not None)\n"
        "sys.exit(status)\n"
    )
    return subprocess.run([sys.executable, "-c", code] + args, capture_output=True, text=True, timeout=300)


def test_evaluate_runs_many_bags_without_importing_ray_and_a_missing_ray_is_one_line(tmp_path):
    for k in range(2):
        write_bag(tmp_path / ("bag%d.bag" % k), 2, truth=[dets(BOX, [0])] * 2)
    common = ["offline", "--model", "face", "--bag", str(tmp_path / "*.bag"), "--topic", "/cam", "--gt-topic", "/gt"]
    common += ["--no-progress"]
    done = _evaluate_in_child(common + ["--out", str(tmp_path / "out"), "--threads", "1"])
    assert done.returncode == 0, done.stderr
    assert "ray imported: False" in done.stdout and "bags, worst first by mAP (2 bags" in done.stdout
    assert json.loads((tmp_path / "out" / "report.json").read_text())["kind"] == "fleet"
    assert (tmp_path / "out" / "bags" / "bag0" / "report.md").is_file()
    missing = _evaluate_in_child(common + ["--out", str(tmp_path / "ray"), "--ray", "local"], hide_ray=True)
    errors = [line for line in missing.stderr.splitlines() if line.strip()]
    assert missing.returncode == 2 and len(errors) == 1
    assert errors[0].startswith("error: --ray: expected Ray to be installed") and "requirements-ray.txt" in errors[0]


@pytest.mark.parametrize(
    "spec, runtime, gpu, threads",
    [
        ("face", {}, False, True),
        ("examples/yolov8n_onnx.yaml", {}, True, True),  # providers: [tensorrt, cuda, cpu]
        ("examples/yolov8n_onnx.yaml", {"providers": "cpu"}, False, True),
        ("examples/yolov8n_onnx.yaml", {"providers": ["CUDAExecutionProvider"]}, True, True),
        ("face", {"format": "tensorrt"}, True, False),
    ],
)
def test_ray_actors_ask_for_a_gpu_when_the_spec_runs_on_one(spec, runtime, gpu, threads):
    loaded = load_spec(spec if spec == "face" else str(MODELS / spec))
    loaded.format = runtime.pop("format", loaded.format)
    loaded.runtime.update(runtime)
    settings = ModelSettings(loaded)
    assert settings.uses_gpu() is gpu and settings.takes_runtime_option("threads") is threads


def test_keypoints_travel_in_the_records_and_split_bags_score_them_like_one_pass(tmp_path):
    names = ["nose", "left_eye", "right_eye"]
    rng = np.random.default_rng(3)
    images, anns = [], []
    with BagWriter(tmp_path / "poses.bag") as writer:
        for i in range(24):
            stamp = START + i * PERIOD
            box = BOX[0] + rng.integers(-15, 15, 4)
            points = np.array([[60, 45], [52, 40], [68, 40]], np.float32) + rng.normal(0, 1, (3, 2))
            pose = Detections(
                [box + rng.normal(0, 2, 4)], [0.9], [0], {0: "person"}, keypoints=[points + rng.normal(0, 3, (3, 2))]
            )
            writer.write_image("/cam", stamp, np.zeros((120, 160, 3), np.uint8))
            writer.write_detections("/pred", stamp, pose, 160, 120)
            images.append({"id": i + 1, "width": 160, "height": 120, "ros_stamp_ns": stamp})
            flat = [float(v) for p in points for v in (p[0], p[1], 2)]
            bbox = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": bbox, "keypoints": flat})
    gt = tmp_path / "poses.json"
    categories = [{"id": 1, "name": "person", "keypoints": names}]
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    truth = GroundTruthSource(gt)
    predictions = RecordedPredictions(tmp_path / "poses.bag", "/pred", detection_labels={0: "person"})
    one_pass = evaluate_bag(tmp_path / "poses.bag", "/cam", truth, predictions, progress=False)
    run = fleet([BagInput(str(tmp_path / "poses.bag"), "/cam", truth, "poses")], predictions, shard_frames=5)
    assert run.report.execution["shards"] == 5
    assert scores(run.bag_reports["poses"]) == scores(one_pass)
    assert one_pass.keypoints["objects"] == 24 and 0 < one_pass.keypoints["pck"]["0.2"] <= 1
