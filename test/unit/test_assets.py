"""Asset cache: verification, wheelhouse extraction and clear errors."""

from __future__ import annotations

import json
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


EXPORT = "ssd_mobilenet_v2_coco_onnx"


def test_exports_are_made_not_downloaded_and_not_default_models():
    assert assets.EXPORTS == [EXPORT]
    assert EXPORT not in assets.DOWNLOADS and EXPORT not in assets.MODELS  # the doctor checks MODELS
    assert {"ssd_mobilenet_v2_coco", "movenet_lightning", "motorcycle_left"} <= set(assets.DOWNLOADS)


def _fake_export(cache, content=b"an onnx export", **stamp_changes):
    """An export file and its stamp in ``cache``, as _make_export writes them (no TensorFlow run)."""
    path = assets.asset_path(EXPORT)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    source = assets.ASSETS["ssd_mobilenet_v2_coco"]
    stamp = {
        "spec": "coco",
        "source": source.key,
        "source_sha256": source.sha256,
        "opset": 13,
        "sha256": assets.sha256_of(path),
    }
    stamp.update(stamp_changes)
    assets.stamp_path(EXPORT).write_text(json.dumps(stamp))
    return path


def test_export_problem_checks_its_stamp(tmp_path, monkeypatch):
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "cache"))
    assert "the ONNX export of spec coco: made on first use" in assets.problem(EXPORT)
    path = _fake_export(tmp_path)
    assert path == tmp_path / "cache" / "models" / "ssd_mobilenet_v2_coco.onnx"
    assert assets.problem(EXPORT) is None
    assert assets.fetch(EXPORT) == path  # intact: reused, nothing exported
    path.write_bytes(b"truncated")
    assert "has sha256 %s, expected" % assets.sha256_of(path) in assets.problem(EXPORT)
    assets.stamp_path(EXPORT).unlink()
    assert "has no readable stamp" in assets.problem(EXPORT)


@pytest.mark.parametrize(
    "change, found",
    [({"source_sha256": "0" * 64}, "source_sha256"), ({"opset": 11}, "opset: [11], expected [13]")],
)
def test_export_made_from_another_source_is_a_problem(tmp_path, monkeypatch, change, found):
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "cache"))
    _fake_export(tmp_path, **change)
    assert "was made from another source (%s" % found in assets.problem(EXPORT)
