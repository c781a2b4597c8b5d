"""bootstrap/activate.sh gives one interpreter that sees ROS and the deep-learning stack.

Each shell starts like a fresh login whose first ``python3`` is foreign: a plain
venv without ROS (made here, so it exists on every machine) or a pyenv shim (the
real one where pyenv is installed, else a shim script made here). Without activate.sh that python3 cannot import rospy;
after sourcing it, ``python3`` is the env's interpreter and imports rospy,
cv_bridge and tensorflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

REPO = Path(__file__).resolve().parents[2]
ACTIVATE = REPO / "bootstrap" / "activate.sh"
PYENV_SHIMS = Path.home() / ".pyenv" / "shims"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMPORT_ALL = "import sys, rospy, cv_bridge, tensorflow; print(sys.prefix)"

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def foreign_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a venv that does not see ROS's site-packages."""
    venv = tmp_path_factory.mktemp("foreign") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin"


@pytest.fixture(scope="module")
def pyenv_shims(foreign_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pyenv's shims where pyenv is installed, else a directory holding what a pyenv shim is:
    a ``python3`` script that hands over to another interpreter (here the foreign venv's)."""
    if (PYENV_SHIMS / "python3").exists():
        return PYENV_SHIMS
    shims = tmp_path_factory.mktemp("shims")
    (shims / "python3").write_text('#!/usr/bin/env bash\nexec "%s" "$@"\n' % (foreign_venv / "python3"))
    (shims / "python3").chmod(0o755)
    return shims


def login_env(first_on_path: Path, **extra: str) -> Dict[str, str]:
    """A fresh login's environment (no ROS, no env) with ``first_on_path`` leading PATH."""
    env = {
        "HOME": os.environ["HOME"],
        "PATH": "%s:%s" % (first_on_path, SYSTEM_PATH),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    for name in ("DL_VISION_HOME", "DL_VISION_CACHE", "PYENV_ROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


def bash(script: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )


@pytest.mark.parametrize("which", ["venv", "pyenv"])
def test_foreign_python3_cannot_import_rospy_without_activate(
    which: str, foreign_venv: Path, pyenv_shims: Path
) -> None:
    first = foreign_venv if which == "venv" else pyenv_shims
    result = bash('python3 -c "import rospy"', login_env(first))
    assert result.returncode != 0
    assert "No module named 'rospy'" in result.stderr


@pytest.mark.parametrize("which", ["venv", "pyenv"])
def test_activate_makes_python3_the_env_interpreter(
    which: str, foreign_venv: Path, pyenv_shims: Path, activated_env: Path
) -> None:
    first = foreign_venv if which == "venv" else pyenv_shims
    result = bash('set -u; source "%s" && python3 -c "%s"' % (ACTIVATE, IMPORT_ALL), login_env(first))
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip().splitlines()[-1]).resolve() == activated_env.resolve()


def test_activate_clears_leaked_pythonhome_and_pythonpath(
    foreign_venv: Path, activated_env: Path, tmp_path: Path
) -> None:
    # What an Anaconda install leaves behind: PYTHONHOME at its prefix, PYTHONPATH at its packages.
    # A fake numpy on PYTHONPATH would shadow ROS's numpy if it survived activation.
    fake = tmp_path / "leaked"
    (fake / "numpy").mkdir(parents=True)
    (fake / "numpy" / "__init__.py").write_text("raise ImportError('leaked numpy imported')\n")
    env = login_env(foreign_venv, PYTHONHOME=str(tmp_path / "conda"), PYTHONPATH=str(fake))
    before = bash('python3 -c "import sys"', env)
    assert before.returncode != 0  # a bogus PYTHONHOME breaks every interpreter
    result = bash('source "%s" && python3 -c "import numpy, cv2; %s"' % (ACTIVATE, IMPORT_ALL), env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip().splitlines()[-1]).resolve() == activated_env.resolve()


def test_activate_puts_ros_tools_and_package_in_reach(foreign_venv: Path, activated_env: Path) -> None:
    script = 'source "%s" && rospack find dl_vision && python3 -c "import dl_vision.msg, dl_vision.pipeline"' % ACTIVATE
    result = bash(script, login_env(foreign_venv))
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip().splitlines()[0]).resolve() == REPO


def test_this_interpreter_is_the_env(activated_env: Path) -> None:
    assert Path(sys.prefix).resolve() == activated_env.resolve()


def test_activate_leaves_a_conda_style_base_env(foreign_venv: Path, activated_env: Path) -> None:
    # A conda base as `conda activate` leaves it: its bin first on PATH and CONDA_* set. No conda
    # command here, so activate.sh must take the prefix off PATH by itself.
    conda_prefix = foreign_venv.parent
    env = login_env(foreign_venv, CONDA_PREFIX=str(conda_prefix), CONDA_DEFAULT_ENV="base", CONDA_SHLVL="1")
    script = 'source "%s" && echo "PATH=$PATH" && echo "CONDA=${CONDA_PREFIX:-}" && python3 -c "%s"' % (
        ACTIVATE,
        IMPORT_ALL,
    )
    result = bash(script, env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    path = next(line[len("PATH=") :] for line in lines if line.startswith("PATH="))
    assert str(foreign_venv) not in path.split(":")
    assert "CONDA=" in lines
    assert Path(lines[-1]).resolve() == activated_env.resolve()
