"""Integration tests need the built workspace: run them inside bootstrap/activate.sh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def activated_env() -> Path:
    """The env prefix that bootstrap/activate.sh made active; fails outside it (a broken setup is no skip)."""
    env = os.environ.get("VIRTUAL_ENV")
    if not env or not os.environ.get("ROS_PACKAGE_PATH"):
        pytest.fail(
            "needs the built workspace: run inside bootstrap/activate.sh (bash bootstrap/setup.sh test does)",
            pytrace=False,
        )
    return Path(env)
