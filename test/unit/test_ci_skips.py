"""The suite's CI rule (test/conftest.py): with CI=true only TensorRT/GPU/CUDA skips stay skips."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SKIPPING_TESTS = """
import pytest

def test_tensorrt_absent():
    pytest.skip("TensorRT is not installed (Jetson / NVIDIA GPU only)")

def test_without_network():
    pytest.skip("no network")

@pytest.mark.skipif(True, reason="needs the built workspace")
def test_workspace_absent():
    pass

@pytest.fixture()
def broken_install():
    pytest.skip("onnx is not installed")

def test_in_a_broken_install(broken_install):
    pass

def test_passes():
    pass
"""


@pytest.fixture()
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A small suite under this repository's conftest: one allowed skip and four that are not,
    in the test body, in a marker, in a fixture and at module level (a failed import)."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_skips=SKIPPING_TESTS)
    pytester.makepyfile(test_module_skip='import pytest\npytest.importorskip("no_such_module_here")\n')
    return pytester


@pytest.mark.parametrize("value", ["true", "1"])
def test_ci_turns_skips_outside_the_allow_list_into_failures(suite, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = suite.runpytest("--continue-on-collection-errors")
    # A skip in the test body fails the test; one in setup or collection is an error: both fail the run.
    result.assert_outcomes(passed=1, skipped=1, failed=1, errors=3)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped in CI for a reason outside the allow-list*needs the built workspace*"])


def test_without_ci_skips_stay_skips(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest()
    result.assert_outcomes(passed=1, skipped=5)
    assert result.ret == 0
