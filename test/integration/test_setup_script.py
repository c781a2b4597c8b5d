"""bootstrap/setup.sh's system-package step: installs nothing when nothing is missing, and as
a non-root user prints the exact apt-get command and stops (as root, the test runs it as nobody)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "bootstrap" / "setup.sh"
MISSING = "dl-vision-test-no-such-package"


def run_step(packages: str, setup: Path = SETUP, as_user: str = "") -> subprocess.CompletedProcess:
    script = 'source "%s"; detect_platform; APT_PACKAGES="%s"; install_system_packages; echo STEP-DONE' % (
        setup,
        packages,
    )
    command = ["bash", "-c", script]
    if as_user:
        command = ["runuser", "-u", as_user, "--"] + command
    return subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60, cwd="/"
    )


def test_nothing_missing_installs_nothing() -> None:
    result = run_step("bash coreutils")
    assert result.returncode == 0, result.stderr
    assert "STEP-DONE" in result.stdout
    assert "installing" not in result.stderr


def test_non_root_gets_the_exact_apt_command() -> None:
    if os.geteuid() == 0:
        # Root becomes nobody, who cannot read a checkout in a 0700 directory (a mktemp clone):
        # the step needs setup.sh alone, so nobody gets a copy in a directory it can read.
        readable = Path(tempfile.mkdtemp(prefix="dl_vision_setup_"))
        try:
            readable.chmod(0o755)
            setup = readable / "setup.sh"
            shutil.copy(str(SETUP), str(setup))
            setup.chmod(0o644)
            result = run_step("bash %s" % MISSING, setup, as_user="nobody")
        finally:
            shutil.rmtree(str(readable))
    else:
        result = run_step("bash %s" % MISSING)
    assert result.returncode == 1
    assert "STEP-DONE" not in result.stdout
    expected = "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y %s" % MISSING
    assert expected in result.stderr.splitlines()[-1]
