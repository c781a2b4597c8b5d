#!/usr/bin/env python3
"""Check that every pin of a requirements file has a wheel for another platform (default: a Jetson).

    python3 bootstrap/check_wheels.py                       # JetPack 5: aarch64, CPython 3.8
    python3 bootstrap/check_wheels.py --record              # also refresh bootstrap/wheels-jetson-py38.json

For each requirement line whose environment markers hold on the target (evaluated here for the
target's Python and machine: pip itself would evaluate them for this machine), it asks the package
index for a binary wheel with ``pip install --dry-run --no-deps --only-binary=:all: --platform ...
--python-version ...`` (pip reads the wheel's metadata, not the wheel). Dependencies pinned with
``==`` under a marker that holds on the target (a metapackage such as ``tensorflow`` that pulls
``tensorflow-cpu-aws`` on aarch64) are followed the same way. Any pin without a wheel fails the
check, naming it. It needs the package index, so it is not part of the offline test command; the
recorded answer (``--record``) is, through a unit test that fails when the requirements changed
after the last check. Runs on any Python 3 with pip (standard library and pip's own packaging).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
except ImportError:  # ROS's interpreter may lack packaging; pip always carries a copy
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import Requirement

BOOTSTRAP = Path(__file__).resolve().parent
RECORD = BOOTSTRAP / "wheels-jetson-py38.json"

#: JetPack 5: Ubuntu 20.04 (glibc 2.31) on aarch64, CPython 3.8.
JETSON = {
    "name": "jetpack5",
    "platforms": ["manylinux_2_31_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "python_version": "3.8.10",  # Ubuntu 20.04's; some packages need >= 3.8.2
    "markers": {
        "python_version": "3.8",
        "python_full_version": "3.8.10",
        "platform_machine": "aarch64",
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    },
}


def target_requirements(text: str, environment: Dict[str, str]) -> List[Requirement]:
    """The requirements of a requirements file whose markers hold in ``environment`` (comments, options skipped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            out.append(requirement)
    return out


def pinned_dependencies(requires_dist: List[str], environment: Dict[str, str]) -> List[Requirement]:
    """``==``-pinned dependencies whose markers hold on the target (extras are not installed: skipped)."""
    out = []
    for text in requires_dist:
        requirement = Requirement(text)
        env = dict(environment, extra="")
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        if any(spec.operator == "==" for spec in requirement.specifier):
            requirement.marker = None
            out.append(requirement)
    return out


def find_wheel(requirement: Requirement, target: dict, scratch: Path) -> Tuple[Optional[dict], str]:
    """``(pip's report entry, "")`` for the wheel pip would take, or ``(None, pip's reason)``."""
    report = scratch / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "-q"]
    command += ["--only-binary=:all:", "--python-version", target["python_version"], "--implementation", "cp"]
    for platform in target["platforms"]:
        command += ["--platform", platform]
    command += ["--target", str(scratch / "target"), "--report", str(report), str(requirement)]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if result.returncode != 0:
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR")]
        return None, (errors[-1] if errors else result.stderr.strip()[-300:])
    entries = json.loads(report.read_text())["install"]
    return entries[0], ""


def check(requirements: Path, target: dict) -> Tuple[List[dict], List[str]]:
    """``(resolved wheels, failures)`` of every pin (and its pinned, platform-specific dependencies)."""
    todo = target_requirements(requirements.read_text(), target["markers"])
    seen, resolved, failures = set(), [], []
    with tempfile.TemporaryDirectory() as scratch:
        while todo:
            requirement = todo.pop(0)
            if requirement.name.lower() in seen:
                continue
            seen.add(requirement.name.lower())
            entry, reason = find_wheel(requirement, target, Path(scratch))
            if entry is None:
                failures.append("%s: no wheel for %s: %s" % (requirement, target["name"], reason))
                print("FAIL %s" % failures[-1], flush=True)
                continue
            wheel = entry["download_info"]["url"].rsplit("/", 1)[-1]
            resolved.append({"requirement": str(requirement), "version": entry["metadata"]["version"], "wheel": wheel})
            print("ok   %-40s %s" % (requirement, wheel), flush=True)
            todo.extend(pinned_dependencies(entry["metadata"].get("requires_dist", []), target["markers"]))
    return resolved, failures


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", type=Path, default=BOOTSTRAP / "requirements.txt")
    parser.add_argument("--record", action="store_true", help="write the answer to %s" % RECORD.name)
    args = parser.parse_args(argv)
    resolved, failures = check(args.requirements, JETSON)
    if args.record and not failures:
        record = {
            "target": JETSON["name"],
            "platforms": JETSON["platforms"],
            "python_version": JETSON["python_version"],
            "requirements": args.requirements.name,
            "requirements_sha256": digest(args.requirements),
            "wheels": resolved,
        }
        RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print("%s: %d wheels, %d pins without one" % ("FAIL" if failures else "PASS", len(resolved), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
