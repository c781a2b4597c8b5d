"""The engine cache: ``$DL_VISION_CACHE/engines``, one engine per ONNX file, TensorRT, GPU, precision and profile.

An engine runs only on the TensorRT version and GPU model that built it, and it bakes in the
precision and the batch range, so all of them key the file together with the ONNX file's sha256
(a re-exported model gets a new engine). A spec with ``format: onnx`` and ``runtime: {engine:
tensorrt}`` finds its engine here, building it on first use (under a file lock, so two nodes
starting together build it once); ``build_engine`` without ``--out`` writes here too. Each engine
has a ``.json`` beside it holding its key. INT8 engines are not built on first use: calibration
needs frames, so ``build_engine --precision int8 --calibration ...`` puts them here first (the key
does not include the calibration frames: a later calibration replaces the engine).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional

from dl_vision.assets import cache_dir, sha256_of
from dl_vision.engines.build import BatchProfile, write_engine
from dl_vision.errors import ConfigError

LOG = logging.getLogger("dl_vision")


def cache_root() -> Path:
    """``$DL_VISION_CACHE/engines`` (default ``~/.cache/dl_vision/engines``)."""
    return cache_dir() / "engines"


class EngineKey(NamedTuple):
    """Everything an engine depends on.

    Attributes:
        onnx_sha256: the source ONNX file's digest.
        tensorrt: TensorRT version (``tensorrt.__version__``).
        gpu: GPU name (``"Orin"``, ``"NVIDIA H200"``).
        compute_capability: ``"8.7"``, ``"9.0"``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        batch: the batch profile ``MIN:OPT:MAX`` for a dynamic batch, ``""`` for a fixed one.
    """

    onnx_sha256: str
    tensorrt: str
    gpu: str
    compute_capability: str
    precision: str
    batch: str

    @property
    def digest(self) -> str:
        """16 hex digits identifying the key (the file name's last part)."""
        text = json.dumps(self._asdict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self, model_stem: str) -> str:
        """``<model>.<precision>.<digest>.engine``: readable, and unique per key."""
        return "%s.%s.%s.engine" % (model_stem, self.precision, self.digest)


def engine_key(
    onnx_path: Path, precision: str, batch: Optional[BatchProfile], tensorrt_version: str, gpu: str, capability: tuple
) -> EngineKey:
    """The key of the engine built from ``onnx_path`` with these settings on this TensorRT and GPU."""
    return EngineKey(
        onnx_sha256=sha256_of(onnx_path),
        tensorrt=str(tensorrt_version),
        gpu=str(gpu),
        compute_capability="%d.%d" % tuple(capability),
        precision=precision,
        batch="" if batch is None else str(batch),
    )


def write_key(key: EngineKey, engine: Path, source: Path) -> Path:
    """Write the ``.json`` beside ``engine`` that records its key and source ONNX."""
    sidecar = engine.with_suffix(".json")
    record = dict(key._asdict(), onnx=str(source))
    sidecar.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return sidecar


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_engine(
    key: EngineKey,
    onnx_path: Path,
    build: Optional[Callable[[], bytes]],
    root: Optional[Path] = None,
) -> Path:
    """The cached engine for ``key``, built with ``build()`` and stored when it is not there yet.

    Args:
        key: see :func:`engine_key`.
        onnx_path: the source model (its stem names the file).
        build: returns the serialized engine; None when this precision is not built on first use.
        root: cache directory (default :func:`cache_root`).

    Raises:
        ConfigError: no cached engine and ``build`` is None (INT8: run ``build_engine`` first).
    """
    root = root or cache_root()
    path = root / key.filename(onnx_path.stem)
    if path.is_file():
        return path
    if build is None:
        raise ConfigError(
            "no cached %s engine for %s on %s (TensorRT %s) in %s: build it first with "
            "rosrun dl_vision build_engine SPEC --precision %s --calibration BAG|FOLDER%s"
            % (
                key.precision,
                onnx_path.name,
                key.gpu,
                key.tensorrt,
                root,
                key.precision,
                " --batch %s" % key.batch if key.batch else "",
            )
        )
    with _locked(path.with_suffix(".lock")):
        if not path.is_file():  # another process may have built it while this one waited
            LOG.warning(
                "TensorRT: building the %s engine for %s on %s (first use; this takes minutes on a Jetson)",
                key.precision,
                onnx_path.name,
                key.gpu,
            )
            write_engine(build(), path)
            write_key(key, path, onnx_path)
            LOG.info("TensorRT: cached %s", path)
    return path
