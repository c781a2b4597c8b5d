"""Damaged bags: bags written by ROS's own rosbag (uncompressed, lz4, bz2 chunks, as ``rosbag record
--lz4/--bz2`` writes them) read whole; cut in half, never closed, overwritten or random they are one
EvaluationError line naming ``rosbag reindex``, and ``allow_partial`` evaluates what is readable with
a report warning that counts what was lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import rosbag
import rospy
from sensor_msgs.msg import Image

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import BagReader, BagWriter
from dl_vision.evaluation.offline import GroundTruthSource, evaluate_bag
from dl_vision.evaluation.predictions import RecordedPredictions
from dl_vision.structures import Detections

FRAMES = 40
TOPIC = "/camera/image_raw"
LABELS = {0: "face"}
BOX = [[40.0, 30.0, 80.0, 70.0]]


def stamp(index: int) -> rospy.Time:
    """Frame ``index``'s header stamp: 10 Hz from t = 100 s."""
    return rospy.Time(100 + index // 10, (index % 10) * 100_000_000)


def record(path, compression: str = "none", close: bool = True):
    """40 bgr8 frames of 160x120 in chunks of about 4 frames, written with ROS's rosbag API."""
    bag = rosbag.Bag(str(path), "w", compression=compression, chunk_threshold=200_000)
    rng = np.random.default_rng(0)
    for i in range(FRAMES):
        msg = Image(height=120, width=160, encoding="bgr8", step=480)
        msg.data = rng.integers(0, 255, 120 * 480, np.uint8).tobytes()  # incompressible: chunks stay chunk-sized
        msg.header.stamp = stamp(i)
        bag.write(TOPIC, msg, msg.header.stamp)
    if close:
        bag.close()
    else:  # a recording killed mid-way: the chunk in progress is written out, the index never is
        bag._stop_writing_chunk()
        bag._file.flush()
        bag._file.close()
    return path


def cut(path, fraction: float):
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def frames(path, allow_partial: bool = False):
    with BagReader(path, allow_partial) as reader:
        count = sum(1 for _ in reader.frames(TOPIC))
        return count, reader.damage_report(TOPIC, count)


@pytest.mark.parametrize("compression", ["none", "lz4", "bz2"])
def test_rosbag_compressed_bags_read_whole(tmp_path, compression):
    bag = record(tmp_path / "b.bag", compression)
    assert rosbag.Bag(str(bag)).get_compression_info().compression == compression
    assert frames(bag) == (FRAMES, None)
    assert frames(bag, allow_partial=True) == (FRAMES, None)


@pytest.mark.parametrize("compression", ["none", "lz4", "bz2"])
def test_a_bag_cut_in_half_names_rosbag_reindex_and_partial_reads_what_is_left(tmp_path, compression):
    bag = cut(record(tmp_path / "b.bag", compression), 0.5)
    with pytest.raises(EvaluationError) as info:
        frames(bag)
    message = str(info.value)
    assert "expected an indexed bag, found a damaged index or none" in message
    assert "rosbag reindex %s" % bag in message and "--allow-partial" in message and "\n" not in message
    count, report = frames(bag, allow_partial=True)
    assert 12 <= count <= 20  # half the bytes, less the chunk the cut went through
    assert "read %d frames" % count in report and "are lost" in report and "rosbag reindex" in report
    # What rosbag reindex repairs (it keeps whole chunks) reads whole, with no more frames than ours.
    repaired = tmp_path / "repaired.bag"
    shutil.copy(bag, repaired)
    subprocess.run(["rosbag", "reindex", str(repaired)], check=True, capture_output=True, timeout=120)
    reindexed, damage = frames(repaired)
    assert damage is None and reindexed <= count


def test_a_recording_that_was_never_closed(tmp_path):
    bag = record(tmp_path / "b.bag", close=False)
    with pytest.raises(EvaluationError, match="found a damaged index or none .*not indexed"):
        frames(bag)
    count, report = frames(bag, allow_partial=True)
    assert count == FRAMES
    assert "unknown (the bag was never closed)" in report


def test_a_chunk_that_does_not_decompress_is_skipped_and_counted(tmp_path):
    bag = record(tmp_path / "b.bag", "lz4")
    data = bytearray(bag.read_bytes())
    chunk = data.index(b"compression=lz4", data.index(b"compression=lz4") + 1)  # the second chunk
    data[chunk + 200 : chunk + 400] = bytes(200)
    bag.write_bytes(bytes(data))
    with pytest.raises(EvaluationError, match="damaged after \\d+ messages of %s" % TOPIC):
        frames(bag)
    count, report = frames(bag, allow_partial=True)
    assert 0 < count < FRAMES
    assert "read %d of the %d frames the index lists" % (count, FRAMES) in report


NO_BAG = "expected a ROS 1 bag (a file starting with '#ROSBAG V2.0'), found an unreadable file"


@pytest.mark.parametrize(
    "content, message, partial_message",
    [
        (os.urandom(100_000), NO_BAG, NO_BAG),
        (b"", NO_BAG, NO_BAG),
        (b"#ROSBAG V2.0\n" + os.urandom(5000), "expected an indexed bag", "found an empty bag"),
        (b"#ROSBAG V1.2\n" + bytes(100), NO_BAG, NO_BAG),
    ],
)
def test_files_that_are_no_bag_are_one_line(tmp_path, content, message, partial_message):
    bag = tmp_path / "b.bag"
    bag.write_bytes(content)
    for allow_partial, expected in ((False, message), (True, partial_message)):
        with pytest.raises(EvaluationError) as info:
            frames(bag, allow_partial)
        assert expected in str(info.value) and "\n" not in str(info.value)


def test_partial_evaluation_warns_in_the_report_how_many_frames_were_lost(tmp_path):
    """Predictions and truth from an intact bag, frames from its copy cut in half."""
    bag = record(tmp_path / "b.bag", "lz4")
    gt_path = tmp_path / "gt.json"
    with BagWriter(tmp_path / "recorded.bag") as writer:
        for i in range(FRAMES):
            writer.write_detections(
                "/pred", stamp(i).to_nsec(), Detections(np.array(BOX, np.float32), [0.9], [0], LABELS), 160, 120
            )
    images = [{"id": i + 1, "frame_index": i, "width": 160, "height": 120} for i in range(FRAMES)]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [40, 30, 40, 40]} for i in range(FRAMES)]
    gt_path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]})
    )
    damaged = cut(bag, 0.5)
    recorded = RecordedPredictions(tmp_path / "recorded.bag", "/pred", detection_labels=LABELS)
    truth = GroundTruthSource(coco_json=gt_path)
    with pytest.raises(EvaluationError, match="rosbag reindex"):
        evaluate_bag(damaged, TOPIC, truth, recorded, progress=False)
    report = evaluate_bag(damaged, TOPIC, truth, recorded, progress=False, allow_partial=True)
    evaluated = report.frames.evaluated
    assert 12 <= evaluated <= 20
    assert report.detection.bbox["AP50"] == pytest.approx(1.0)
    (warning,) = [w for w in report.warnings if "is damaged (--allow-partial)" in w]
    assert "read %d frames" % evaluated in warning and "are lost" in warning
