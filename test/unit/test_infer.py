"""The ``infer`` command, run as a subprocess like a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dl_vision import assets

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "infer"


def _infer(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture()
def photo(tmp_path) -> Path:
    path = tmp_path / "photos" / "astronaut.png"
    path.parent.mkdir()
    shutil.copy(assets.fetch("astronaut"), path)
    return path


def test_face_detections_as_json_and_annotated_image_beside_the_input(tmp_path, photo):
    result = _infer("--model", "face", str(photo), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert (record["model"], record["width"], record["height"]) == ("face", 512, 512)
    assert [d["label"] for d in record["detections"]] == ["face"]
    x0, y0, x1, y1 = record["detections"][0]["box_xyxy"]
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # the face is near (172, 79, 273, 174)
    assert len(record["detections"][0]["keypoints_xy"]) == 6
    assert set(record["timings_ms"]) == {
        "decode",
        "detector/preprocess",
        "detector/inference",
        "detector/postprocess",
        "annotate",
    }
    annotated = photo.parent / "astronaut.annotated.png"
    assert record["annotated"] == str(annotated)
    assert annotated.stat().st_size > 0


def test_default_model_is_coco_objects(tmp_path):
    result = _infer("coffee", "--no-annotate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == "coco" and "annotated" not in record
    cups = [d for d in record["detections"] if d["label"] == "cup"]
    assert len(cups) == 1 and cups[0]["score"] > 0.9 and cups[0]["class_id"] == 46


def test_pose_keypoints_with_their_scores(tmp_path):
    result = _infer("--model", "movenet", "astronaut", "--no-annotate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (person,) = json.loads(result.stdout)["detections"]
    assert person["label"] == "person" and len(person["keypoints_xy"]) == 17
    assert len(person["keypoint_scores"]) == 17 and all(0 <= v <= 1 for v in person["keypoint_scores"])


def test_sample_names_several_images_segmentation_and_out_dir(tmp_path):
    out_dir = tmp_path / "out"
    result = _infer(
        "--model", "person_segmentation", "astronaut", "coffee", "--out-dir", str(out_dir), cwd=tmp_path
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    astronaut, coffee = (json.loads(line) for line in result.stdout.splitlines())
    assert sum(astronaut["class_fractions"].values()) == pytest.approx(1.0, abs=1e-3)
    assert astronaut["class_fractions"]["person"] > 0.4
    assert sum(coffee["class_fractions"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sorted(p.name for p in out_dir.iterdir()) == ["astronaut.annotated.png", "coffee.annotated.png"]


def test_score_option_and_sample_annotated_into_the_working_directory(tmp_path):
    result = _infer("--model", "face", "--score", "0.999", "astronaut", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["detections"] == []
    assert (tmp_path / "astronaut.annotated.png").is_file()


@pytest.mark.parametrize(
    "args, text",
    [
        (("--model", "no_such_model", "astronaut"), "unknown model spec 'no_such_model'"),
        (("--model", "face", "missing.png"), "image missing.png: expected an image file or a sample name"),
    ],
)
def test_mistakes_print_one_line_and_exit_2(tmp_path, args, text):
    result = _infer(*args, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_undecodable_image_is_an_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = _infer("--model", "face", "broken.png", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: image broken.png: expected a file OpenCV can decode" in result.stderr
