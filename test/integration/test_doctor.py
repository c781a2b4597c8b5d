"""The doctor passes this setup and names the fault in two broken ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DL_VISION_CACHE") or Path.home() / ".cache" / "dl_vision")

pytestmark = pytest.mark.ros


def run_doctor(env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dl_vision.doctor", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        timeout=300,
    )


def problem_lines(output: str, level: str = "error") -> list:
    return [line for line in output.splitlines() if line.startswith(level + ": ")]


@pytest.fixture(scope="module")
def numpy2() -> Tuple[str, Path]:
    """A numpy that ROS's compiled modules (cv_bridge's boost module, Debian's cv2) were not built
    for: the numpy 2 wheel ``setup.sh test`` caches, installed offline into a directory of its own
    (kept in the cache between runs).

    Returns:
        The numpy version and the directory to put on ``PYTHONPATH``.
    """
    tag = "cp%d%d" % sys.version_info[:2]
    wheels = sorted((CACHE / "wheels").glob("numpy-2.*-%s-*.whl" % tag))
    if not wheels:
        pytest.fail(
            "expected a numpy 2 wheel for %s in %s: bash bootstrap/setup.sh test caches it" % (tag, CACHE / "wheels")
        )
    wheel = wheels[-1]
    target = CACHE / "test" / wheel.stem
    if not (target / "numpy" / "__init__.py").is_file():
        partial = target.with_name(target.name + ".part")
        shutil.rmtree(str(partial), ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--no-deps"]
            + ["--target", str(partial), str(wheel)],
            check=True,
        )
        os.replace(str(partial), str(target))
    return wheel.name.split("-")[1], target


def test_doctor_passes_this_setup(activated_env: Path) -> None:
    result = run_doctor(dict(os.environ), "--model", "face", "--model", "face_mesh")
    assert result.returncode == 0, result.stdout
    assert problem_lines(result.stdout) == []
    assert "doctor: healthy" in result.stdout
    assert "  model        face: detection, tflite on tflite, input 192x192, loaded in " in result.stdout
    # A cascade is probed as a detector; its first stage gives the file, input and provider.
    assert "  model        face_mesh: cascade, tflite on tflite, input 192x192, loaded in " in result.stdout
    assert result.stdout.count("1 detection on astronaut") == 2


def test_doctor_model_names_what_is_wrong_with_a_spec(activated_env: Path, tmp_path: Path) -> None:
    from dl_vision import assets
    from dl_vision.doctor import Report, check_model_specs

    truncated = tmp_path / "face.tflite"
    truncated.write_bytes(assets.fetch("face_detection_full_range").read_bytes()[:3000])
    spec = (REPO / "config" / "models" / "face.yaml").read_text()
    (tmp_path / "face.yaml").write_text(spec.replace("{asset: face_detection_full_range}", str(truncated)))
    report = Report()
    check_model_specs(report, [str(tmp_path / "face.yaml"), "no_such_spec"])
    assert not report.healthy
    damaged, unknown = report.problems
    assert damaged["message"].startswith(
        "%s: %s: expected a complete TFLite flatbuffer" % (tmp_path / "face.yaml", truncated)
    )
    assert unknown["message"].startswith("no_such_spec: unknown model spec 'no_such_spec'")


def test_doctor_names_a_shadowing_numpy(activated_env: Path, numpy2: Tuple[str, Path]) -> None:
    version, numpy2_dir = numpy2
    env = dict(os.environ, PYTHONPATH="%s:%s" % (numpy2_dir, os.environ.get("PYTHONPATH", "")))
    result = run_doctor(env)
    assert result.returncode == 1, result.stdout
    numpy_errors = [line for line in problem_lines(result.stdout) if line.startswith("error: numpy: ")]
    assert len(numpy_errors) == 1, result.stdout
    line = numpy_errors[0]
    assert "numpy %s from %s" % (version, numpy2_dir / "numpy") in line
    assert "Fix: remove %s from PYTHONPATH" % numpy2_dir in line


def test_doctor_names_a_missing_model(activated_env: Path, tmp_path: Path) -> None:
    empty_cache = tmp_path / "cache"
    empty_cache.mkdir()
    result = run_doctor(dict(os.environ, DL_VISION_CACHE=str(empty_cache)))
    assert result.returncode == 1, result.stdout
    model_errors = [line for line in problem_lines(result.stdout) if line.startswith("error: models: ")]
    assert model_errors, result.stdout
    assert any("face_detection_full_range" in line for line in model_errors), result.stdout
    assert all("dl_vision.assets" in line for line in model_errors)
    # Only the models are wrong: nothing else is reported broken.
    assert len(problem_lines(result.stdout)) == len(model_errors), result.stdout
