"""The example specs in config/models/examples parse and name registered backends and decoders.

The model files they point at are the user's own and are not loaded here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dl_vision.backends import BACKENDS
from dl_vision.decoders import create_decoder
from dl_vision.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "config" / "models" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_spec_parses_and_builds_its_decoder(path):
    spec = load_spec(path)
    assert BACKENDS.get(spec.format).runtime
    decoder = create_decoder(spec.decoder.type, spec.decoder.params, spec.labels)
    assert decoder.name == spec.decoder.type


def test_yolov8n_example_has_the_80_coco_classes():
    spec = load_spec(next(p for p in EXAMPLES if p.stem == "yolov8n_onnx"))
    assert len(spec.labels) == 80 and spec.labels[0] == "person" and spec.labels[79] == "toothbrush"
