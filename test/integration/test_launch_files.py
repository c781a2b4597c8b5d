"""Every launch file passes roslaunch's static check (what ``roslaunch-check`` runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted(p.name for p in (REPO / "launch").glob("*.launch"))

pytestmark = pytest.mark.ros


def test_every_launch_file_is_checked() -> None:
    assert {"detect.launch", "segment.launch", "detect_and_segment.launch", "demo.launch"} <= set(LAUNCH_FILES)


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_launch_file_passes_roslaunch_check(launch_file: str, activated_env: Path) -> None:
    from roslaunch.rlutil import check_roslaunch

    error = check_roslaunch(str(REPO / "launch" / launch_file))
    assert error is None, "expected %s to pass roslaunch-check, found: %s" % (launch_file, error)
