"""Asset cache: verification, wheelhouse extraction and clear errors."""

from __future__ import annotations

import zipfile

import pytest

from dl_vision import assets
from dl_vision.errors import AssetError


@pytest.fixture()
def real_astronaut():
    """The genuine astronaut.png from the user's cache (fetched once)."""
    return assets.fetch("astronaut").read_bytes()


def _wheelhouse(tmp_path, member_bytes):
    house = tmp_path / "house"
    house.mkdir()
    with zipfile.ZipFile(str(house / assets.SCIKIT_IMAGE.filename), "w") as wheel:
        for key, data in member_bytes.items():
            wheel.writestr(assets.ASSETS[key].member, data)
    return house


def test_unknown_key_names_the_known_ones():
    with pytest.raises(AssetError, match="unknown asset 'nope'.*astronaut"):
        assets.asset_path("nope")


def test_fetch_from_wheelhouse_verifies_and_caches(tmp_path, monkeypatch, real_astronaut):
    monkeypatch.setenv("DL_VISION_WHEELHOUSE", str(_wheelhouse(tmp_path, {"astronaut": real_astronaut})))
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "cache"))
    assert assets.problem("astronaut").startswith("astronaut is missing")
    path = assets.fetch("astronaut")
    assert path == tmp_path / "cache" / "images" / "astronaut.png"
    assert path.read_bytes() == real_astronaut
    assert assets.problem("astronaut") is None


def test_tampered_wheel_content_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("DL_VISION_WHEELHOUSE", str(_wheelhouse(tmp_path, {"astronaut": b"not a png"})))
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AssetError, match="sha256 .* expected 88431cd9"):
        assets.fetch("astronaut")
    assert not assets.asset_path("astronaut").exists()


def test_corrupted_cache_file_is_reported_and_refetched(tmp_path, monkeypatch, real_astronaut):
    monkeypatch.setenv("DL_VISION_WHEELHOUSE", str(_wheelhouse(tmp_path, {"astronaut": real_astronaut})))
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "cache"))
    target = assets.asset_path("astronaut")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    assert "expected 88431cd9" in assets.problem("astronaut")
    assert assets.fetch("astronaut").read_bytes() == real_astronaut


def test_wheel_without_the_member_is_an_asset_error(tmp_path, monkeypatch, real_astronaut):
    monkeypatch.setenv("DL_VISION_WHEELHOUSE", str(_wheelhouse(tmp_path, {"astronaut": real_astronaut})))
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AssetError, match="does not contain skimage/data/coffee.png"):
        assets.fetch("coffee")


def test_cli_list_reports_missing_without_fetching(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "empty"))
    assert assets.main(["--list", "face_detection_full_range"]) == 0
    assert "face_detection_full_range is missing" in capsys.readouterr().out
    assert not (tmp_path / "empty" / "models").exists()
