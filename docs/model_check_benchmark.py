#!/usr/bin/env python3
"""What checking a model file before its runtime parses it costs, against loading the model.

Run inside the env (``source bootstrap/activate.sh``)::

    python3 docs/model_check_benchmark.py               # the default specs, 7 fresh processes each
    python3 docs/model_check_benchmark.py --runs 15 --specs face person_segmentation
    python3 docs/model_check_benchmark.py --specs coco person_masks   # a cascade: its stages

For each spec, in fresh processes (the way a node or ``infer`` starts):

* ``start``: ``Detector/Segmenter.from_spec`` as it runs at start, check included: spec, runtime
  import, model check, interpreter, tensors allocated;
* ``load``: the same model loaded again by its backend alone, without the check (runtime already
  imported): what the runtime takes for the file;
* ``check``: :func:`dl_vision.model_check.check_model_file` on the file (the flatbuffer walk for
  TFLite; for ONNX the sha256 and the cached verdict);
* ``child``: the alternative for TFLite the issue names, a first load in a child process (Python
  start, runtime import, interpreter): what every start would pay before its verdict is cached;
  ``sha256``: what a start with a cached verdict pays to look it up.

Medians over the runs. The machine is shared: compare the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from typing import Dict, List

_ONE_RUN = r"""
import json, sys, time
t0 = time.perf_counter()
from dl_vision.pipeline import Detector, Segmenter
from dl_vision.spec import load_spec
spec = load_spec(sys.argv[1])
cls = Detector if spec.task == "detection" else Segmenter
t1 = time.perf_counter()
cls.from_spec(spec)
t2 = time.perf_counter()
from dl_vision.backends import BACKENDS
path = spec.model_path()
BACKENDS.create(spec.format, dict(spec.runtime), path=path)  # the backend alone: no check
t3 = time.perf_counter()
from dl_vision.model_check import check_model_file
checks = []
for _ in range(5):
    t = time.perf_counter(); check_model_file(spec.format, path); checks.append(time.perf_counter() - t)
print("RESULT " + json.dumps({"start": t2 - t1, "load": t3 - t2, "check": sorted(checks)[2], "path": str(path),
                             "format": spec.format}))
"""

_CHILD_LOAD = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
tf.lite.Interpreter(model_path=sys.argv[1]).allocate_tensors()
"""


def measure(spec: str, runs: int) -> Dict[str, float]:
    samples: Dict[str, List[float]] = {"start": [], "load": [], "check": [], "child": [], "sha256": []}
    info: Dict[str, str] = {}
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _ONE_RUN, spec], capture_output=True, text=True, check=True)
        result = json.loads([line for line in out.stdout.splitlines() if line.startswith("RESULT ")][0][7:])
        for key in ("start", "load", "check"):
            samples[key].append(result[key])
        info = {"path": result["path"], "format": result["format"]}
        if info["format"] == "tflite":
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", _CHILD_LOAD, info["path"]], capture_output=True, check=True)
            samples["child"].append(time.perf_counter() - started)
        started = time.perf_counter()
        with open(info["path"], "rb") as model:
            hashlib.sha256(model.read()).hexdigest()
        samples["sha256"].append(time.perf_counter() - started)
    return {key: statistics.median(values) * 1e3 for key, values in samples.items() if values}


def _model_specs(names: List[str]) -> List[str]:
    """The specs that hold model files: a cascade stands for its detector's and its stages' specs."""
    from dl_vision.spec import CascadeSpec, load_spec

    specs: List[str] = []
    for name in names:
        spec = load_spec(name)
        if isinstance(spec, CascadeSpec):
            specs += [spec.detector.name] + [stage.model.name for stage in spec.second_stages]
        else:
            specs.append(name)
    return list(dict.fromkeys(specs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", nargs="+", default=["face", "face_short_range", "person_segmentation"])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(
        "| spec | start (ms) | load (ms) | check (ms) | check / start | check / load | child load (ms) | sha256 (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for spec in _model_specs(args.specs):
        m = measure(spec, args.runs)
        print(
            "| %s | %.0f | %.1f | %.1f | %.1f%% | %.0f%% | %s | %.2f |"
            % (
                spec,
                m["start"],
                m["load"],
                m["check"],
                100 * m["check"] / m["start"],
                100 * m["check"] / m["load"],
                "%.0f" % m["child"] if "child" in m else "n/a",
                m["sha256"],
            )
        )


if __name__ == "__main__":
    main()
