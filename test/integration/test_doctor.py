"""The doctor passes this setup and names the fault in two broken ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

REPO = Path(__file__).resolve().parents[2]
# A numpy that ROS's compiled modules (cv_bridge's boost module, Debian's cv2) were not built for.
INCOMPATIBLE_NUMPY = "2.0.2"

pytestmark = pytest.mark.ros


def run_doctor(env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dl_vision.doctor"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        timeout=300,
    )


def problem_lines(output: str, level: str = "error") -> list:
    return [line for line in output.splitlines() if line.startswith(level + ": ")]


@pytest.fixture(scope="module")
def numpy2_dir() -> Path:
    """A real numpy 2 wheel installed into a directory of its own (cached between runs)."""
    cache = Path(os.environ.get("DL_VISION_CACHE", Path.home() / ".cache" / "dl_vision"))
    target = cache / "test" / ("numpy-%s-py%d%d" % ((INCOMPATIBLE_NUMPY,) + sys.version_info[:2]))
    if not (target / "numpy" / "__init__.py").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--target",
                str(target),
                "numpy==%s" % INCOMPATIBLE_NUMPY,
            ],
            check=True,
        )
    return target


def test_doctor_passes_this_setup(activated_env: Path) -> None:
    result = run_doctor(dict(os.environ))
    assert result.returncode == 0, result.stdout
    assert problem_lines(result.stdout) == []
    assert "doctor: healthy" in result.stdout


def test_doctor_names_a_shadowing_numpy(activated_env: Path, numpy2_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH="%s:%s" % (numpy2_dir, os.environ.get("PYTHONPATH", "")))
    result = run_doctor(env)
    assert result.returncode == 1, result.stdout
    numpy_errors = [line for line in problem_lines(result.stdout) if line.startswith("error: numpy: ")]
    assert len(numpy_errors) == 1, result.stdout
    line = numpy_errors[0]
    assert "numpy %s from %s" % (INCOMPATIBLE_NUMPY, numpy2_dir / "numpy") in line
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
