"""Rules for the whole suite: in CI a skipped test is a failure, and no test downloads anything.

With ``CI=true`` (``.ci/run`` sets it) a test skipped for a reason that does not name TensorRT,
a GPU or CUDA fails instead, so a broken install cannot pass as a row of skips. Only hardware
this machine may lack is allowed to skip.

Everything tests need is cached by ``bash bootstrap/setup.sh test``; ``PIP_NO_INDEX`` makes a pip
run that would download (the asset fetcher's, for one) fail at once instead.
"""

from __future__ import annotations

import os
import re

import pytest

pytest_plugins = ["pytester"]

#: Skip reasons allowed in CI: hardware, not installation.
ALLOWED_SKIP = re.compile(r"\b(TensorRT|GPU|CUDA)\b")


def pytest_configure(config: pytest.Config) -> None:
    os.environ["PIP_NO_INDEX"] = "1"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _fail_if_not_allowed(report) -> None:
    """Turn a skipped report into a failure in CI unless its reason is on the allow-list."""
    if not report.skipped or hasattr(report, "wasxfail") or not _in_ci():
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if ALLOWED_SKIP.search(reason):
        return
    report.outcome = "failed"
    report.longrepr = "skipped in CI for a reason outside the allow-list (TensorRT, GPU, CUDA): %s" % reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_if_not_allowed(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_if_not_allowed(outcome.get_result())
