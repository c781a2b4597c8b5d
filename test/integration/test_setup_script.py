"""bootstrap/setup.sh's system-package step: installs nothing when nothing is missing, and as
a non-root user prints the exact apt-get command and stops (as root, the test runs it as nobody);
it finds ROS Noetic's apt source by asking apt (fake apt configurations stand in for the
platforms); and its .pth bridge lets an interpreter without ROS's site-packages import ROS (the
conda mode's mechanism, tested without conda)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "bootstrap" / "setup.sh"
MISSING = "dl-vision-test-no-such-package"


@contextlib.contextmanager
def readable_setup() -> Iterator[Path]:
    """A directory with a copy of setup.sh that the user nobody can read.

    Root runs the step as nobody, who cannot read a checkout in a 0700 directory (a mktemp
    clone): the step needs setup.sh alone, so nobody gets a copy in a directory it can read.
    """
    readable = Path(tempfile.mkdtemp(prefix="dl_vision_setup_"))
    try:
        readable.chmod(0o755)
        setup = readable / "setup.sh"
        shutil.copy(str(SETUP), str(setup))
        setup.chmod(0o644)
        yield readable
    finally:
        shutil.rmtree(str(readable))


def run_step(
    packages: str,
    setup: Path = SETUP,
    as_user: str = "",
    platform: str = "",
    env: Optional[Dict[str, str]] = None,
) -> subprocess.CompletedProcess:
    """Source setup.sh, detect the platform (or take ``platform``), install ``packages``."""
    script = 'source "%s"; detect_platform; %sAPT_PACKAGES="%s"; install_system_packages; echo STEP-DONE' % (
        setup,
        "PLATFORM=%s; " % platform if platform else "",
        packages,
    )
    command = ["bash", "-c", script]
    if as_user:
        command = ["runuser", "-u", as_user, "--", "env"] + ["%s=%s" % item for item in (env or {}).items()] + command
    return subprocess.run(
        command,
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=60,
        cwd="/",
    )


def run_step_as_non_root(packages: str, **options) -> subprocess.CompletedProcess:
    """``run_step`` as a user who is not root: nobody when the test runs as root."""
    if os.geteuid() != 0:
        return run_step(packages, **options)
    with readable_setup() as readable:
        return run_step(packages, setup=readable / "setup.sh", as_user="nobody", **options)


def test_nothing_missing_installs_nothing() -> None:
    result = run_step("bash coreutils")
    assert result.returncode == 0, result.stderr
    assert "STEP-DONE" in result.stdout
    assert "installing" not in result.stderr


def test_non_root_gets_the_exact_apt_command() -> None:
    result = run_step_as_non_root("bash %s" % MISSING)
    assert result.returncode == 1
    assert "STEP-DONE" not in result.stdout
    expected = "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y %s" % MISSING
    assert expected in result.stderr.splitlines()[-1]


# --- ROS Noetic's apt source ---------------------------------------------------------------------

UBUNTU = "deb http://archive.ubuntu.com/ubuntu focal main universe\n"
SNAPSHOTS = "http://snapshots.ros.org/noetic/final/ubuntu"
ROS_SOURCES = {
    # The ros:noetic images since June 2025.
    "snapshots": {
        "ros1-snapshots.list": "deb [ signed-by=/usr/share/keyrings/ros1-snapshots-archive-keyring.gpg ] "
        "%s focal main\n" % SNAPSHOTS
    },
    # ROS's own instructions before the end of life.
    "ros-latest": {"ros-latest.list": "deb http://packages.ros.org/ros/ubuntu focal main\n"},
    # A mirror, in the deb822 format.
    "mirror-deb822": {
        "ros.sources": "Types: deb\nURIs: https://mirrors.ustc.edu.cn/ros/ubuntu\nSuites: focal\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/ros-archive-keyring.gpg\n"
    },
    # ROS 2 only: its repository does not provide ROS 1.
    "ros2-only": {
        "ros2.list": "deb [arch=amd64 signed-by=/usr/share/keyrings/ros-archive-keyring.gpg] "
        "http://packages.ros.org/ros2/ubuntu focal main\n"
    },
    # A line that a text search would find, but apt ignores.
    "commented-out": {"ros-latest.list": "# deb http://packages.ros.org/ros/ubuntu focal main\n"},
    "none": {},
}
FOUND = {
    "snapshots": SNAPSHOTS,
    "ros-latest": "http://packages.ros.org/ros/ubuntu",
    "mirror-deb822": "https://mirrors.ustc.edu.cn/ros/ubuntu",
}


def fake_apt_root(root: Path, sources: Dict[str, str], lists: Dict[str, str] = None) -> Path:
    """An apt root directory: sources.list with Ubuntu's archive, ``sources`` in sources.list.d."""
    for directory in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "var/lib/apt/lists", "var/lib/dpkg"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("")
    (root / "etc/apt/sources.list").write_text(UBUNTU)
    for name, text in sources.items():
        (root / "etc/apt/sources.list.d" / name).write_text(text)
    for name, text in (lists or {}).items():
        (root / "var/lib/apt/lists" / name).write_text(text)
    return root


def ros_source(root: Path) -> subprocess.CompletedProcess:
    script = 'source "%s"; ros_noetic_apt_source || { echo "ADVICE: $(ros_noetic_apt_advice)"; exit 3; }' % SETUP
    env = dict(os.environ, DL_VISION_APT_ROOT=str(root))
    return subprocess.run(
        ["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )


@pytest.mark.parametrize("case", sorted(ROS_SOURCES))
def test_ros_noetic_apt_source_is_what_apt_would_fetch(case: str, tmp_path: Path) -> None:
    result = ros_source(fake_apt_root(tmp_path, ROS_SOURCES[case]))
    if case in FOUND:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == "%s (apt sources)" % FOUND[case]
        return
    assert result.returncode == 3, result.stdout
    (advice,) = result.stdout.splitlines()
    assert advice.startswith("ADVICE: ROS Noetic's apt repository is not configured")
    assert (
        "'deb [signed-by=/usr/share/keyrings/ros1-snapshots-archive-keyring.gpg] %s focal main'" % SNAPSHOTS in advice
    )
    assert ("(apt has only ROS 2's http://packages.ros.org/ros2/ubuntu)" in advice) == (case == "ros2-only")


PACKAGES_STANZA = (
    "Package: ros-noetic-ros-base\nVersion: 1.5.0-1focal.20210922.213755\nArchitecture: amd64\n"
    "Filename: pool/r/ros-base.deb\nSize: 1\nDescription: ROS base\n\n"
)


def test_downloaded_lists_answer_for_any_source_name(tmp_path: Path) -> None:
    # A company mirror under a path of its own: apt-cache policy knows ros-noetic-ros-base from it.
    lists = {"artifacts.example.com_noetic-mirror_dists_focal_main_binary-amd64_Packages": PACKAGES_STANZA}
    root = fake_apt_root(
        tmp_path, {"robots.list": "deb http://artifacts.example.com/noetic-mirror focal main\n"}, lists
    )
    result = ros_source(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ros-noetic-ros-base 1.5.0-1focal.20210922.213755 is available (apt-cache policy)"


@pytest.mark.parametrize("case", ["snapshots", "ros2-only"])
def test_noetic_install_step_proceeds_only_with_a_ros1_source(case: str) -> None:
    apt_dir = Path(tempfile.mkdtemp(prefix="dl_vision_apt_"))
    try:
        apt_dir.chmod(0o755)  # nobody reads it when the test runs as root
        root = fake_apt_root(apt_dir, ROS_SOURCES[case])
        result = run_step_as_non_root("bash %s" % MISSING, platform="noetic-opt", env={"DL_VISION_APT_ROOT": str(root)})
    finally:
        shutil.rmtree(str(apt_dir))
    assert result.returncode == 1
    assert "STEP-DONE" not in result.stdout
    last = result.stderr.splitlines()[-1]
    if case == "snapshots":
        assert "ROS Noetic's apt source: %s (apt sources)" % SNAPSHOTS in result.stderr
        assert last.endswith("apt-get install -y %s" % MISSING)
    else:
        assert "error: ROS Noetic's apt repository is not configured (apt has only ROS 2's" in last
        assert "apt-get install" not in result.stderr


# --- .pth bridge into an interpreter without ROS (the conda mode's mechanism) ----------------------

ROS_PYTHON = "/usr/bin/python3"
ROS_MINOR = "%d.%d" % tuple(
    int(x) for x in subprocess.check_output([ROS_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"]).split()
)
PYENV_SAME = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python%s" % (ROS_MINOR, ROS_MINOR))))
#: Interpreters of ROS's version without ROS's site-packages: a venv of ROS's own Python (everywhere)
#: and pyenv's build of that version (where pyenv has one: the development machines).
FOREIGN_BASES = dict([("ros-python-venv", ROS_PYTHON)] + [("pyenv", p) for p in PYENV_SAME[-1:]])
CHECK_ROS = """
import numpy, cv2, rospy
from cv_bridge import CvBridge
image = numpy.arange(48, dtype=numpy.uint8).reshape(4, 4, 3)
assert (CvBridge().imgmsg_to_cv2(CvBridge().cv2_to_imgmsg(image, "bgr8")) == image).all()
print(numpy.__file__)
"""


def bridge(python: str) -> subprocess.CompletedProcess:
    script = 'source "%s"; detect_platform; source_ros; bridge_ros_site_packages "%s"' % (SETUP, python)
    return subprocess.run(
        ["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )


@pytest.mark.parametrize("interpreter", sorted(FOREIGN_BASES))
def test_bridge_lets_an_interpreter_without_ros_import_it(interpreter: str, tmp_path: Path) -> None:
    base = FOREIGN_BASES[interpreter]
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True)  # no site-packages
    python = str(tmp_path / "env" / "bin" / "python3")
    before = subprocess.run(
        [python, "-c", CHECK_ROS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )
    assert before.returncode != 0 and "No module named" in before.stderr
    result = bridge(python)
    assert result.returncode == 0, result.stderr
    after = subprocess.run(
        [python, "-c", CHECK_ROS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip().startswith(("/usr/lib/python3/dist-packages/", "/opt/ros/")), after.stdout
    # The constraints file holds numpy to ROS's version: pip (this env's, run for that interpreter)
    # sees ROS's numpy as installed there and keeps it.
    version = subprocess.check_output(
        [ROS_PYTHON, "-c", "import numpy; print(numpy.__version__)"], universal_newlines=True
    )
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-index",
            "--dry-run",
            "numpy==" + version.strip(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
    )
    assert pip.returncode == 0 and "Requirement already satisfied: numpy==%s" % version.strip() in pip.stdout, (
        pip.stdout
    )


def test_bridge_refuses_another_python_version(tmp_path: Path) -> None:
    # The bridge asks the interpreter its version before it writes anything; this one answers 2.7.
    other = tmp_path / "python2.7"
    other.write_text("#!/bin/sh\necho 2.7\n")
    other.chmod(0o755)
    result = bridge(str(other))
    assert result.returncode == 1
    assert "expected ROS's version %s, whose compiled modules it must load" % ROS_MINOR in result.stderr
