"""File fuzz: corrupted copies of every kind of file a user hands the package, through the real entry
points, as the frame fuzz (``test/rostest/fuzz.test``) does for messages.

Kinds and entry points: a TFLite model (the face detector), the COCO detector's frozen graph
(SSD-MobileNet-v2, 70 MB) and an ONNX model (a Conv head built here) through ``infer``; a bag
(rosbag-written, lz4 chunks) and a COCO JSON through ``evaluate offline``; a spec YAML
(``face.yaml``) through ``infer``; damaged models given to a node started by ``roslaunch
detect.launch`` with respawn on. Each variant is a truncation at a random
offset, bit flips, a zeroed span or a span of random bytes (in turn).

Pass: a command exits 0 (the damage missed everything that matters: weights, pixels, a comment) or
with the commands' user-error status 2 and a last stderr line starting ``error:``; never a
traceback, a signal or a hang. A node that cannot start logs one FATAL line and exits 1 on every
attempt. ``DL_VISION_FILE_FUZZ_COUNT`` variants per kind (CI: 4, one of each corruption, 2 of the frozen graph;
``docs/measurements.md`` has the run with 200), ``DL_VISION_FILE_FUZZ_NODE_COUNT`` node starts
(default 2: the issue's cases), ``DL_VISION_FILE_FUZZ_SEED``; ``DL_VISION_FILE_FUZZ_REPORT=path``
writes the outcomes per kind as JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pytest
import rosbag
import rospy
from onnx import TensorProto, helper
from sensor_msgs.msg import Image

from dl_vision import assets

REPO = Path(__file__).resolve().parents[2]
#: Variants per kind; by default 4 (one of each corruption), 2 of the frozen graph (a run loads 70 MB and runs it).
COUNT = int(os.environ.get("DL_VISION_FILE_FUZZ_COUNT", "0"))
DEFAULT_COUNTS = {"frozen_graph": 2}
NODE_COUNT = int(os.environ.get("DL_VISION_FILE_FUZZ_NODE_COUNT", "2"))
SEED = int(os.environ.get("DL_VISION_FILE_FUZZ_SEED", "15"))
REPORT = os.environ.get("DL_VISION_FILE_FUZZ_REPORT")
#: Status of a command given a user's error (see the README's "Errors" section).
USER_ERROR = 2
RUN_TIMEOUT_S = 300
NODE_WAIT_S = 120  # for the node test: two deaths or a start within this
CORRUPTIONS = ("truncate", "flip", "zero", "random")
TOPIC = "/camera/image_raw"

pytestmark = pytest.mark.ros


def corrupt(data: bytes, count: int, seed: int) -> Iterator[Tuple[str, bytes]]:
    """``count`` damaged copies of ``data``: truncations, bit flips, zeroed and random spans, in turn."""
    rng = random.Random(seed)
    for i in range(count):
        how = CORRUPTIONS[i % len(CORRUPTIONS)]
        copy = bytearray(data)
        if how == "truncate":
            copy = copy[: rng.randrange(0, len(copy))]
        elif how == "flip":
            for _ in range(rng.choice((1, 1, 2, 8))):
                copy[rng.randrange(len(copy))] ^= 1 << rng.randrange(8)
        else:
            start, size = rng.randrange(len(copy)), rng.choice((4, 16, 256, 4096))
            span = len(copy[start : start + size])
            copy[start : start + span] = (
                bytes(span) if how == "zero" else bytes(rng.getrandbits(8) for _ in range(span))
            )
        yield "%03d_%s" % (i, how), bytes(copy)


def run_command(args: Sequence[str], cwd: Path, env: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Run an entry point; its outcome: ``ok``, ``error`` (the user-error line) or a failure description."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            list(args), cwd=str(cwd), env=env, capture_output=True, text=True, errors="replace", timeout=RUN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "FAIL: no exit within %d s" % RUN_TIMEOUT_S}
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    outcome = {"seconds": round(time.monotonic() - started, 1), "last_line": last[:300]}
    if result.returncode < 0:
        outcome["outcome"] = "FAIL: killed by %s" % signal.Signals(-result.returncode).name
    elif "Traceback (most recent call last)" in result.stderr:
        outcome["outcome"] = "FAIL: traceback"
    elif result.returncode == 0:
        outcome["outcome"] = "ok"
    elif result.returncode == USER_ERROR and last.startswith("error: "):
        outcome["outcome"] = "error"
    else:
        outcome["outcome"] = "FAIL: exit %d" % result.returncode
    return outcome


def _script(name: str) -> List[str]:
    return [sys.executable, str(REPO / "scripts" / name)]


def _write_spec(path: Path, model: Path, base: str) -> Path:
    path.write_text(base.replace("MODEL_FILE", str(model)))
    return path


FACE_SPEC = (
    (REPO / "config" / "models" / "face.yaml").read_text().replace("{asset: face_detection_full_range}", "MODEL_FILE")
)
COCO_SPEC = (
    (REPO / "config" / "models" / "coco.yaml")
    .read_text()
    .replace("{asset: ssd_mobilenet_v2_coco}", "MODEL_FILE")
    .replace("../labels/", str(REPO / "config" / "labels") + "/")
)
ONNX_SPEC = """name: fuzz_onnx
task: detection
file: MODEL_FILE
format: onnx
input: {size: [64, 64], resize: letterbox, color: rgb, layout: nchw, normalization: unit}
decoder: {type: yolo, params: {version: v8}}
labels: [a, b]
runtime: {providers: [cpu]}
"""


def _onnx_model(path: Path) -> Path:
    """A YOLOv8-style head (two Conv layers, 2 classes, 64 x 64 candidates) with fixed random weights."""
    rng = np.random.default_rng(0)
    first, second = rng.normal(0, 0.1, (8, 3, 3, 3)), rng.normal(0, 0.1, (6, 8, 1, 1))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2"], ["c2"]),
            helper.make_node("Reshape", ["c2", "shape"], ["output0"]),
        ],
        "fuzz_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 4096])],
        [
            helper.make_tensor("w1", TensorProto.FLOAT, first.shape, first.astype(np.float32).tobytes(), raw=True),
            helper.make_tensor("w2", TensorProto.FLOAT, second.shape, second.astype(np.float32).tobytes(), raw=True),
            helper.make_tensor("shape", TensorProto.INT64, [3], [0, 6, 4096]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _bag_and_truth(folder: Path) -> Tuple[Path, Path]:
    """Six 256x256 astronaut frames (shifted) in lz4 chunks, as rosbag record --lz4 writes them; COCO truth."""
    photo = cv2.resize(cv2.imread(str(assets.fetch("astronaut"))), (256, 256))
    bag_path, images, annotations = folder / "eval.bag", [], []
    with rosbag.Bag(str(bag_path), "w", compression="lz4", chunk_threshold=100_000) as bag:
        for i in range(6):
            frame = np.roll(photo, 8 * i, axis=1)
            msg = Image(height=256, width=256, encoding="bgr8", step=768, data=frame.tobytes())
            msg.header.stamp = rospy.Time(100 + i)
            bag.write(TOPIC, msg, msg.header.stamp)
            images.append({"id": i + 1, "frame_index": i, "width": 256, "height": 256})
            box = [86 + 4 * i, 40, 52, 48]  # the face, as infer finds it at this size
            annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": box, "iscrowd": 0})
    truth = folder / "gt.json"
    truth.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]})
    )
    return bag_path, truth


@pytest.fixture(scope="module")
def originals(tmp_path_factory, activated_env) -> Dict[str, Path]:
    folder = tmp_path_factory.mktemp("originals")
    photo = folder / "astronaut.png"
    shutil.copy(assets.fetch("astronaut"), photo)
    bag, truth = _bag_and_truth(folder)
    return {
        "photo": photo,
        "tflite": assets.fetch("face_detection_full_range"),
        "frozen_graph": assets.fetch("ssd_mobilenet_v2_coco"),
        "onnx": _onnx_model(folder / "head.onnx"),
        "bag": bag,
        "coco": truth,
        "spec": _write_spec(folder / "face.yaml", assets.fetch("face_detection_full_range"), FACE_SPEC),
    }


def _commands(kind: str, variant: Path, originals: Dict[str, Path], work: Path) -> List[str]:
    """The entry point a user would run on a damaged file of ``kind``."""
    infer = _script("infer") + ["--no-annotate", str(originals["photo"]), "--model"]
    evaluate = _script("evaluate") + ["offline", "--model", "face", "--no-progress", "--out", str(work / "report")]
    if kind == "tflite":
        return infer + [str(_write_spec(work / "spec.yaml", variant, FACE_SPEC))]
    if kind == "onnx":
        return infer + [str(_write_spec(work / "spec.yaml", variant, ONNX_SPEC))]
    if kind == "frozen_graph":
        return infer + [str(_write_spec(work / "spec.yaml", variant, COCO_SPEC))]
    if kind == "spec":
        return infer + [str(variant)]
    if kind == "bag":
        return evaluate + ["--bag", str(variant), "--gt", str(originals["coco"])]
    return evaluate + ["--bag", str(originals["bag"]), "--gt", str(variant)]


SUFFIX = {"tflite": ".tflite", "frozen_graph": ".pb", "onnx": ".onnx", "spec": ".yaml", "bag": ".bag", "coco": ".json"}
#: Seed offset of each kind (fixed, so that adding a kind keeps the others' variants).
KIND_SEEDS = {"bag": 0, "coco": 1, "onnx": 2, "spec": 3, "tflite": 4, "frozen_graph": 5}


@pytest.mark.parametrize("kind", list(SUFFIX))
def test_corrupted_files_through_the_entry_points(kind, originals, tmp_path):
    # Each damaged ONNX file gets a verdict file (its sha256) in the model cache: keep those out of the real one.
    env = dict(os.environ, DL_VISION_CACHE=str(tmp_path / "cache")) if kind == "onnx" else None
    workers = os.cpu_count() or 2
    count = COUNT or DEFAULT_COUNTS.get(kind, 4)
    variants = corrupt(originals[kind].read_bytes(), count, SEED + KIND_SEEDS[kind])
    outcomes: Dict[str, Dict[str, object]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:  # a few variants on disk at a time (a damaged frozen graph is 70 MB)
            batch = []
            for name, data in itertools.islice(variants, workers):
                work = tmp_path / name
                work.mkdir()
                variant = work / (name + SUFFIX[kind])
                variant.write_bytes(data)
                batch.append((name, _commands(kind, variant, originals, work), work, variant))
            if not batch:
                break
            for (name, _, _, variant), outcome in zip(batch, pool.map(lambda j: run_command(j[1], j[2], env), batch)):
                outcomes[name] = outcome
                variant.unlink()
    counts: Dict[str, int] = {}
    for outcome in outcomes.values():
        counts[str(outcome["outcome"])] = counts.get(str(outcome["outcome"]), 0) + 1
    if REPORT:
        path = Path(REPORT)
        report = json.loads(path.read_text()) if path.is_file() else {}
        report[kind] = {"counts": counts, "variants": outcomes}
        path.write_text(json.dumps(report, indent=1, sort_keys=True))
    failures = {name: o for name, o in outcomes.items() if str(o["outcome"]).startswith("FAIL")}
    assert not failures, "expected exit 0 or one error line for every damaged %s file, found %s" % (kind, failures)


def _node_variants(count: int) -> List[Tuple[str, bytes]]:
    """The issue's two cases (face model cut at 3,000 bytes, selfie segmenter at 1,000), then random damage."""
    face = assets.fetch("face_detection_full_range").read_bytes()
    selfie = assets.fetch("selfie_segmentation").read_bytes()
    cases = [("face_3000", face[:3000]), ("selfie_1000", selfie[:1000])]
    return (cases + [("face_" + n, d) for n, d in corrupt(face, max(count - 2, 0), SEED)])[:count]


DIED = re.compile(r"process has died \[pid \d+, exit code (-?\d+)")
STARTED = re.compile(r"\[INFO\].*/detector: \S+ on /")


def _watch(launch: subprocess.Popen, lines: "queue.Queue[str]") -> None:
    for line in launch.stdout:
        lines.put(line)


@pytest.mark.parametrize("index", range(NODE_COUNT))
def test_a_node_given_a_damaged_model_says_why_on_every_attempt(index, tmp_path, activated_env):
    """detect.launch with respawn: each attempt is one FATAL line and exit 1 (no signal), restarts spaced."""
    name, data = _node_variants(NODE_COUNT)[index]
    model = tmp_path / (name + ".tflite")
    model.write_bytes(data)
    spec = _write_spec(tmp_path / "spec.yaml", model, FACE_SPEC)
    port = 20000 + os.getpid() % 10000 + index
    env = dict(os.environ, ROS_MASTER_URI="http://localhost:%d" % port, ROS_LOG_DIR=str(tmp_path / "log"))
    launch = subprocess.Popen(
        ["roslaunch", "-p", str(port), "dl_vision", "detect.launch", "model:=%s" % spec, "respawn_delay:=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,
    )
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=_watch, args=(launch, lines), daemon=True).start()
    output: List[str] = []
    deaths: List[int] = []
    started = False
    deadline = time.monotonic() + NODE_WAIT_S
    try:  # until the second death, or the node runs (the damage missed what matters), or time is up
        while len(deaths) < 2 and not started and time.monotonic() < deadline:
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            deaths += [int(code) for code in DIED.findall(output[-1])]
            started = STARTED.search(output[-1]) is not None
    finally:
        os.killpg(launch.pid, signal.SIGINT)
        try:
            launch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
    text = "".join(output)
    fatal = [line for line in output if "[FATAL]" in line]
    assert deaths or started, "expected the node to die or to start within %d s, found neither:\n%s" % (
        NODE_WAIT_S,
        text[-3000:],
    )
    assert "Traceback" not in text, text[-3000:]
    assert all(code == 1 for code in deaths), "expected exit code 1 on every attempt, found %s:\n%s" % (
        deaths,
        text[-3000:],
    )
    assert len(fatal) >= len(deaths), "expected one FATAL line per attempt, found:\n%s" % text[-3000:]
    if name in ("face_3000", "selfie_1000"):  # the cases: restarted, and the same line each time
        assert len(deaths) >= 2, "expected the node to be restarted, found:\n%s" % text[-3000:]
        for line in fatal:
            assert "%s: expected a complete TFLite flatbuffer" % model in line, line
