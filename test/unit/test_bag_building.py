"""make_eval_bag / export_bag_frames round trips and the evaluation command lines' exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_building import make_eval_bag
from dl_vision.evaluation.bag_io import BagReader, BagWriter
from dl_vision.evaluation.cli import compare_reports_main, evaluate_main, export_bag_frames_main
from dl_vision.evaluation.ground_truth import CocoGroundTruth
from dl_vision.evaluation.report import DetectionMetrics, FrameCounts, Report, Source, Throughput, write_report
from dl_vision.messages import detections_from_msg, mono8_to_array
from dl_vision.structures import Detections


def image_folder(path, count):
    path.mkdir()
    for i in range(count):
        image = np.zeros((30, 40, 3), np.uint8)
        image[5:15, 10 + i : 20 + i] = 255
        cv2.imwrite(str(path / ("img_%02d.png" % i)), image)
    return path


def test_make_eval_bag_keys_annotations_to_stamps_and_writes_truth_topic(tmp_path):
    images = image_folder(tmp_path / "images", 3)
    polygon = [[10, 5, 20, 5, 20, 15, 10, 15]]
    coco = {
        "images": [{"id": 7, "file_name": "img_00.png"}, {"id": 8, "file_name": "img_02.png"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 5, 10, 10], "iscrowd": 0, "segmentation": polygon}
        ],
        "categories": [{"id": 1, "name": "square"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    result = make_eval_bag(images, tmp_path / "e.bag", "/cam", tmp_path / "ann.json", rate_hz=4.0, start_ns=10**9)
    assert (result["frames"], result["labelled"]) == (3, 2)
    gt = json.loads((tmp_path / "e.gt.json").read_text())
    assert [(i["ros_stamp_ns"], i["frame_index"]) for i in gt["images"]] == [(10**9, 0), (10**9 + 500_000_000, 2)]
    with BagReader(tmp_path / "e.bag") as reader:
        frames = list(reader.frames("/cam"))
        truth = [detections_from_msg(m) for _, _, m in reader.messages(["/ground_truth/detections"])]
    assert len(frames) == 3 and frames[1].stamp_ns == 10**9 + 250_000_000
    assert [len(t) for t in truth] == [1, 0]
    np.testing.assert_allclose(truth[0].xyxy, [[10, 5, 20, 15]])
    assert truth[0].class_names == ["square"] and truth[0].masks[0, 10, 15] and not truth[0].masks[0, 20, 30]
    lookup = CocoGroundTruth(tmp_path / "e.gt.json", "/cam").lookup(frames[0])
    assert lookup.class_names == ["square"] and lookup.masks.sum() == truth[0].masks.sum()


def test_make_eval_bag_rejects_annotations_matching_no_image(tmp_path):
    images = image_folder(tmp_path / "images", 1)
    (tmp_path / "ann.json").write_text(
        json.dumps({"images": [{"id": 1, "file_name": "other.png"}], "annotations": [], "categories": []})
    )
    with pytest.raises(EvaluationError, match="none of its images matches a frame"):
        make_eval_bag(images, tmp_path / "e.bag", annotations=tmp_path / "ann.json")


def test_export_frames_gives_a_skeleton_that_keys_back_to_the_bag(tmp_path):
    make_eval_bag(image_folder(tmp_path / "images", 4), tmp_path / "e.bag", "/cam", start_ns=5 * 10**9)
    assert (
        export_bag_frames_main(
            [str(tmp_path / "e.bag"), str(tmp_path / "out"), "--topic", "/cam", "--every", "2", "--classes", "square"]
        )
        == 0
    )
    skeleton = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [i["frame_index"] for i in skeleton["images"]] == [0, 2]
    assert skeleton["categories"] == [{"id": 1, "name": "square"}]
    exported = cv2.imread(str(tmp_path / "out" / skeleton["images"][1]["file_name"]))
    with BagReader(tmp_path / "e.bag") as reader:
        frame = [f for f in reader.frames("/cam") if f.stamp_ns == skeleton["images"][1]["ros_stamp_ns"]][0]
    np.testing.assert_array_equal(exported, frame.image())


def _report(m_ap):
    return Report(
        mode="offline",
        model="face",
        source=Source("b.bag", "/cam", "gt.json", 0.5, 0.5),
        frames=FrameCounts(frames=2, evaluated=2),
        throughput=Throughput(wall_s=1.0, frames_per_s=2.0),
        detection=DetectionMetrics(
            images=2,
            ground_truth_objects=2,
            predictions=1,
            bbox={
                "mAP": m_ap,
                "AP50": 0.9,
                "AP75": 0.5,
                "AR100": 0.7,
                "per_class_ap": {"face": m_ap},
                "per_class_ap50": {"face": 0.9},
                "pr_curve_iou50": {},
            },
            confusion={
                "precision": 1.0,
                "recall": 0.5,
                "f1": 2 / 3,
                "labels": ["face", "background"],
                "matrix": [[1, 1], [0, 0]],
                "score_threshold": 0.5,
                "iou_threshold": 0.5,
                "per_class": {},
            },
        ),
    )


@pytest.mark.parametrize(
    "args, status",
    [
        ([], 0),
        (["--fail-under", "mAP=0.5"], 0),
        (["--fail-under", "mAP=0.7"], 1),
        (["--max-drop", "mAP=0.05"], 1),
        (["--max-drop", "mAP=0.2"], 0),
        (["--fail-under", "nonsense"], 2),
    ],
)
def test_compare_reports_exit_status(tmp_path, capsys, args, status):
    write_report(_report(0.7), tmp_path / "base")
    write_report(_report(0.6), tmp_path / "cand")
    assert compare_reports_main([str(tmp_path / "base"), str(tmp_path / "cand")] + args) == status
    if status != 2:
        assert "| mAP | 0.7000 | 0.6000 | -0.1000 |" in capsys.readouterr().out


def test_evaluate_reports_a_user_error_in_one_line(tmp_path, capsys):
    status = evaluate_main(
        [
            "offline",
            "--bag",
            str(tmp_path / "missing.bag"),
            "--gt-topic",
            "/gt",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert status == 2
    assert capsys.readouterr().err.strip().startswith("error: bag: expected a ROS 1 bag file at")


def test_make_eval_bag_writes_class_maps_named_like_the_images(tmp_path):
    images = image_folder(tmp_path / "images", 2)
    (tmp_path / "maps").mkdir()
    class_map = np.zeros((30, 40), np.uint8)
    class_map[5:15, 11:21] = 1
    cv2.imwrite(str(tmp_path / "maps" / "img_01.png"), class_map)
    result = make_eval_bag(images, tmp_path / "e.bag", "/cam", class_maps=tmp_path / "maps", start_ns=10**9)
    assert result["class_maps"] == 1
    with BagReader(tmp_path / "e.bag") as reader:
        ((_, _, msg),) = list(reader.messages(["/ground_truth/class_map"]))
    assert msg.header.stamp.nanosec == 100_000_000
    np.testing.assert_array_equal(mono8_to_array(msg), class_map)
    cv2.imwrite(str(tmp_path / "maps" / "img_00.png"), np.zeros((3, 3), np.uint8))
    with pytest.raises(EvaluationError, match="expected a 40x30 single-channel PNG"):
        make_eval_bag(images, tmp_path / "f.bag", "/cam", class_maps=tmp_path / "maps")


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing bag", "expected a ROS 1 bag file at"),
        ("missing topic", "expected topic /camera/image_raw, found only: /gt"),
        ("bad spec", "unknown model spec 'no_such_model'"),
    ],
)
def test_evaluate_checks_bag_topics_and_spec_before_importing_a_runtime(tmp_path, case, expected):
    """A user's mistake costs no TensorFlow import: the cheap checks come first."""
    bag = tmp_path / "b.bag"
    if case != "missing bag":
        topic = "/other" if case == "missing topic" else "/camera/image_raw"
        with BagWriter(bag) as writer:
            writer.write_image(topic, 1, np.zeros((4, 4, 3), np.uint8))
            writer.write_detections("/gt", 1, Detections.empty({0: "face"}), 4, 4)
    args = ["offline", "--bag", str(bag), "--gt-topic", "/gt", "--out", str(tmp_path / "out"), "--no-progress"]
    args += ["--model", "no_such_model"]
    code = (
        "import sys; from dl_vision.evaluation.cli import evaluate_main; status = evaluate_main(%r); "
        "print(status, any(m.split('.')[0] in ('tensorflow', 'onnxruntime', 'tflite_runtime') for m in sys.modules))"
        % (args,)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert expected in done.stderr.strip().splitlines()[-1]
