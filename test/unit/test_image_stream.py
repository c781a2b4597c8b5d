"""image_stream's frame loading: assets, files and folders in order; bad sources raise (no master needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dl_vision.errors import AssetError, ConfigError
from dl_vision.ros.image_stream import load_frames


def test_directory_files_and_assets_load_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "b.png"), np.full((4, 6, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "a.png"), np.full((4, 6), 50, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "single.jpg"
    cv2.imwrite(str(single), np.zeros((8, 8, 3), np.uint8))
    frames = load_frames([str(folder), str(single), "coffee"])
    assert [name for name, _ in frames] == ["a.png", "b.png", "single.jpg", "coffee"]
    assert frames[0][1].shape == (4, 6)  # greyscale stays single-channel (published as mono8)
    assert frames[1][1].shape == (4, 6, 3)
    assert frames[3][1].ndim == 3 and frames[3][1].dtype == np.uint8


@pytest.mark.parametrize(
    "make_sources, error",
    [
        (lambda tmp: [], ConfigError),
        (lambda tmp: [str(tmp)], ConfigError),  # a directory without images
        (lambda tmp: [str(_write(tmp / "broken.png", b"not a png"))], AssetError),
        (lambda tmp: ["no_such_asset_or_file"], AssetError),
    ],
    ids=["no sources", "empty directory", "unreadable file", "unknown name"],
)
def test_bad_sources_raise(tmp_path: Path, make_sources, error: type) -> None:
    with pytest.raises(error):
        load_frames(make_sources(tmp_path))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
