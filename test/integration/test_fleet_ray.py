"""Fleet evaluation on a local Ray cluster (2 CPUs, started once for the module) with the real face
detector and person segmenter, on bags made from scikit-image photos: the Ray run reports exactly
the numbers of the single process, also when a worker process is killed mid-shard; unusable bags
are their own errors; the command line joins the cluster by its address.

Ray workers import dl_vision through the environment they inherit: run inside bootstrap/activate.sh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest
import ray  # bootstrap/requirements-ray.txt, installed by `bash bootstrap/setup.sh test`
import yaml

from dl_vision import assets
from dl_vision.evaluation.bag_building import make_eval_bag
from dl_vision.evaluation.fleet import BagInput, LocalExecutor, evaluate_fleet
from dl_vision.evaluation.offline import GroundTruthSource, Scoring, evaluate_bag
from dl_vision.evaluation.predictions import ModelSettings
from dl_vision.evaluation.ray_runner import RayExecutor
from dl_vision.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
FACE = yaml.safe_load((REPO / "test" / "fixtures" / "astronaut_reference.yaml").read_text())["faces"][0]
TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance for the module; yields its address for other drivers."""
    ray.init("local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def write_photo_bag(root: Path, name: str, frames: int, scale: float, seed: int, size=(320, 240), **options):
    """A bag of frames showing the astronaut at ``scale`` at random places (every third frame a
    photo without a face), with a COCO file keyed to the bag and the boxes on a truth topic;
    ``class_maps`` adds rough person class maps (the face box widened to the shoulders)."""
    class_maps = options.pop("class_maps", False)
    width, height = size
    rng = np.random.default_rng(seed)
    astronaut = cv2.imread(str(assets.fetch("astronaut")))
    others = [cv2.resize(cv2.imread(str(assets.fetch(n))), size) for n in ("coffee", "chelsea", "rocket")]
    folder = root / name
    (folder / "maps").mkdir(parents=True)
    images, anns = [], []
    for i in range(frames):
        class_map = np.zeros((height, width), np.uint8)
        if i % 3 == 2:
            canvas, boxes = others[i % len(others)], []
        else:
            photo = cv2.resize(astronaut, None, fx=scale, fy=scale)
            x0 = int(rng.integers(0, width - photo.shape[1] + 1))
            y0 = int(rng.integers(0, height - photo.shape[0] + 1))
            canvas = np.full((height, width, 3), 90, np.uint8)
            canvas[y0 : y0 + photo.shape[0], x0 : x0 + photo.shape[1]] = photo
            box = [FACE[0] * scale + x0, FACE[1] * scale + y0, FACE[2] * scale + x0, FACE[3] * scale + y0]
            boxes = [box]
            class_map[int(box[1]) :, max(0, int(box[0]) - 30) : int(box[2]) + 30] = 1
        file_name = "%03d.png" % i
        cv2.imwrite(str(folder / file_name), canvas)
        cv2.imwrite(str(folder / "maps" / file_name), class_map)
        images.append({"id": i + 1, "file_name": file_name})
        for x_min, y_min, x_max, y_max in boxes:
            bbox = [x_min, y_min, x_max - x_min, y_max - y_min]
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": bbox, "area": 1.0}
            )
    coco = folder / "annotations.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}))
    made = make_eval_bag(
        folder,
        root / (name + ".bag"),
        TOPIC,
        coco,
        rate_hz=10.0,
        start_ns=(1_700_000_000 + 1000 * seed) * 10**9,
        class_maps=folder / "maps" if class_maps else None,
        **options,
    )
    return root / (name + ".bag"), Path(made["ground_truth"])


@pytest.fixture(scope="module")
def fleet_bags(tmp_path_factory):
    """Three scorable bags (COCO file; truth topic; COCO file and class maps), an unreadable file,
    and a bag whose COCO file names another image size (found by the worker, not before)."""
    root = tmp_path_factory.mktemp("fleet")
    near, near_gt = write_photo_bag(root, "near", 12, 0.45, seed=1)
    far, _ = write_photo_bag(root, "far", 12, 0.25, seed=2)
    people, people_gt = write_photo_bag(root, "people", 12, 0.4, seed=3, class_maps=True)
    wrong, wrong_gt = write_photo_bag(root, "wrong_size", 6, 0.4, seed=4)
    data = json.loads(wrong_gt.read_text())
    for image in data["images"]:
        image.update(width=640, height=480)
    wrong_gt.write_text(json.dumps(data))
    (root / "garbage.bag").write_bytes(b"\x00not a bag" * 1000)
    return [
        BagInput(str(near), TOPIC, GroundTruthSource(near_gt), "near"),
        BagInput(str(far), TOPIC, GroundTruthSource(detections_topic="/ground_truth/detections"), "far"),
        BagInput(str(people), TOPIC, GroundTruthSource(people_gt, class_map_topic="/ground_truth/class_map"), "people"),
        BagInput(str(root / "garbage.bag"), TOPIC, GroundTruthSource(near_gt), "garbage"),
        BagInput(str(wrong), TOPIC, GroundTruthSource(wrong_gt), "wrong_size"),
    ]


def scores(report) -> dict:
    """Everything in a report but timing."""
    data = report.to_dict()
    for key in ("throughput", "source"):
        data.pop(key)
    return data


def test_ray_gives_the_single_process_numbers_and_reports_unusable_bags(cluster, fleet_bags):
    settings = ModelSettings(load_spec("face"), load_spec("person_segmentation"), 4, runtime={"threads": 1})
    here = settings.build()
    local = evaluate_fleet(fleet_bags, LocalExecutor(here), progress=False)
    with RayExecutor(settings, actors=2) as executor:
        run = evaluate_fleet(fleet_bags, executor, Scoring(), shard_frames=5, progress=False)
    fleet = run.report
    assert fleet.execution["runner"] == "ray" and fleet.execution["actors"] == 2
    assert fleet.execution["shards"] == 11 and len(fleet.execution["shards_per_worker"]) == 2
    assert [r.name for r in fleet.bags[:2]] == ["garbage", "wrong_size"]
    assert "expected a ROS 1 bag" in fleet.bags[0].error
    assert "is 640x480, but the frame is 320x240" in fleet.bags[1].error  # raised in a worker
    assert sorted(run.bag_reports) == ["far", "near", "people"]
    for bag in fleet_bags[:3]:
        single = evaluate_bag(bag.path, bag.topic, bag.truth, here, progress=False)
        assert scores(run.bag_reports[bag.name]) == scores(single)
        assert scores(local.bag_reports[bag.name]) == scores(single)
        assert single.frames.frames == 12 and single.frames.evaluated == 12
    assert scores(fleet.overall) == scores(local.report.overall)
    assert fleet.overall.frames.frames == 36 and fleet.overall.segmentation["frames"] == 12
    assert fleet.overall.detection.bbox["AP50"] > 0.5  # the model finds the faces it is scored on


def _children(root: int) -> List[int]:
    """Processes descending from ``root`` (this test's Ray workers, not anyone else's)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def _kill_first_scoring_worker(stop: threading.Event, killed: List[int]) -> None:
    """SIGKILL the first of this test's Ray workers seen inside ``ShardWorker.score``."""
    while not stop.is_set():
        for pid in _children(os.getpid()):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
                    title = cmdline.read().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::ShardWorker.score"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.005)


def test_a_worker_killed_mid_shard_has_its_shard_rerun_and_changes_no_number(cluster, tmp_path):
    bag, gt = write_photo_bag(tmp_path, "long", 96, 0.9, seed=5, size=(640, 480), compressed="jpeg")
    settings = ModelSettings(load_spec("face"), batch_size=1, runtime={"threads": 1})
    truth = GroundTruthSource(gt)
    single = evaluate_bag(bag, TOPIC, truth, settings.build(), progress=False)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_scoring_worker, args=(stop, killed), daemon=True)
    with RayExecutor(settings, actors=2) as executor:
        executor.start(4)  # the models are loaded before the killer looks for a scoring worker
        killer.start()
        run = evaluate_fleet([BagInput(str(bag), TOPIC, truth, "long")], executor, shard_frames=24, progress=False)
    stop.set()
    killer.join()
    assert len(killed) == 1
    assert run.report.execution["retried_shards"] == 1
    assert any("its worker died" in w and "scored again" in w for w in run.report.warnings)
    report = run.bag_reports["long"]
    assert report.frames.frames == 96 and report.frames.evaluated == 96
    assert scores(report) == scores(single)


def test_the_command_line_joins_the_cluster_by_address(cluster, fleet_bags, tmp_path):
    out = tmp_path / "out"
    folder = str(Path(fleet_bags[0].path).parent)
    command = [
        sys.executable,
        str(REPO / "scripts" / "evaluate"),
        "offline",
        "--model",
        "face",
        "--bag",
        folder + "/near.bag",
    ]
    command += [folder + "/people.bag", "--gt", "{dir}/{stem}.gt.json", "--ray", cluster, "--shard-frames", "6"]
    command += ["--out", str(out), "--no-progress", "--fail-under", "AP50=0.5"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fleet = json.loads((out / "report.json").read_text())
    assert fleet["execution"]["runner"] == "ray" and fleet["execution"]["shards"] == 4
    assert [row["frames"] for row in fleet["bags"]] == [12, 12]
    here = ModelSettings(load_spec("face"), batch_size=8, runtime={"threads": 1}).build()
    for row in fleet["bags"]:
        bag = fleet_bags[0] if row["name"] == "near.bag" else fleet_bags[2]
        single = evaluate_bag(bag.path, TOPIC, GroundTruthSource(bag.truth.coco_json), here, progress=False)
        kept = json.loads((out / row["report"] / "report.json").read_text())
        assert kept["detection"] == json.loads(json.dumps(single.to_dict()["detection"]))
