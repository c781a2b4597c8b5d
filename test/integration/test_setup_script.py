"""bootstrap/setup.sh's system-package step: installs nothing when nothing is missing, and as
a non-root user prints the exact apt-get command and stops."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "bootstrap" / "setup.sh"
MISSING = "dl-vision-test-no-such-package"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg (Debian or Ubuntu)")


def run_step(packages: str, as_user: str = "") -> subprocess.CompletedProcess:
    script = 'source "%s"; detect_platform; APT_PACKAGES="%s"; install_system_packages; echo STEP-DONE' % (
        SETUP,
        packages,
    )
    command = ["bash", "-c", script]
    if as_user:
        command = ["runuser", "-u", as_user, "--"] + command
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)


def test_nothing_missing_installs_nothing() -> None:
    result = run_step("bash coreutils")
    assert result.returncode == 0, result.stderr
    assert "STEP-DONE" in result.stdout
    assert "installing" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to become another user")
def test_non_root_gets_the_exact_apt_command(tmp_path: Path) -> None:
    if (
        not os.access(str(SETUP), os.R_OK)
        or subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(SETUP)]).returncode
    ):
        pytest.skip("the checkout is not readable by nobody")
    result = run_step("bash %s" % MISSING, as_user="nobody")
    assert result.returncode == 1
    assert "STEP-DONE" not in result.stdout
    expected = "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y %s" % MISSING
    assert expected in result.stderr.splitlines()[-1]
