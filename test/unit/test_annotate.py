"""Annotators draw on copies, with the class colours, where the results are."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.annotate import (
    class_color,
    colorize_segmentation,
    draw_detections,
    instance_color,
    overlay_segmentation,
)
from dl_vision.errors import ImageConversionError
from dl_vision.structures import Detections, KeypointSchema, Segmentation

GREY = 100


def _image(height: int = 120, width: int = 160) -> np.ndarray:
    return np.full((height, width, 3), GREY, np.uint8)


def _one_box(**extra) -> Detections:
    return Detections(
        np.array([[40, 50, 100, 110]], np.float32), np.array([0.87], np.float32), np.array([1]), ["cat", "dog"], **extra
    )


def test_box_edges_and_label_are_drawn_on_a_copy():
    image = _image()
    out = draw_detections(image, _one_box(), thickness=1)
    assert np.all(image == GREY)  # input untouched
    color = class_color(1)
    np.testing.assert_array_equal(out[80, 40], color)  # left edge
    np.testing.assert_array_equal(out[110, 70], color)  # bottom edge
    assert np.all(out[75:85, 60:80] == GREY)  # inside the box (no mask): unchanged
    label_band = out[30:49, 40:100]  # the label sits above the box
    assert np.any(np.all(label_band == color, axis=-1))  # label background
    assert np.any(np.all(label_band < 60, axis=-1))  # dark (anti-aliased) text on it


def test_label_goes_inside_a_box_at_the_top_edge():
    dets = Detections(np.array([[10, 0, 150, 100]], np.float32), np.array([0.5]), np.array([0]), ["cat"])
    out = draw_detections(_image(), dets, thickness=1)
    assert np.any(np.all(out[2:20, 12:60] < 60, axis=-1))  # dark text just below the top edge


def test_keypoints_and_instance_masks_take_the_instances_colour():
    masks = np.zeros((1, 120, 160), bool)
    masks[0, 60:100, 50:90] = True
    keypoints = np.array([[[70.0, 20.0]]], np.float32)  # outside the box, so it is clearly the dot
    out = draw_detections(_image(), _one_box(masks=masks, keypoints=keypoints), mask_alpha=0.5, thickness=1)
    color = np.array(instance_color(0))
    assert tuple(color) != class_color(1)
    np.testing.assert_array_equal(out[20, 70], color)
    blended = np.round(0.5 * color + 0.5 * GREY)
    np.testing.assert_allclose(out[80, 70], blended, atol=1)
    assert np.all(out[5, 5] == GREY)


def _two_people(scores):
    """Two boxes of one class side by side, each with a 3-point pose (the middle point at ``scores``)."""
    keypoints = np.array([[[20, 60], [40, 60], [60, 60]], [[100, 60], [120, 60], [140, 60]]], np.float32)
    return Detections(
        np.array([[10, 30, 70, 110], [90, 30, 150, 110]], np.float32),
        [0.9, 0.8],
        [0, 0],
        ["person"],
        keypoints=keypoints,
        keypoint_scores=np.array([[0.9, scores[0], 0.9], [0.9, scores[1], 0.9]], np.float32),
        keypoint_schema=KeypointSchema.from_names(["a", "b", "c"], [["a", "b"], ["b", "c"]]),
    )


def _near(pixel, color) -> bool:
    """An anti-aliased line's pixel: within 40 of the colour in every channel."""
    return bool(np.abs(pixel.astype(int) - np.array(color)).max() <= 40)


def test_skeletons_in_a_colour_per_instance_without_weak_keypoints():
    out = draw_detections(_image(), _two_people([0.9, 0.1]), thickness=1)
    first, second = instance_color(0), instance_color(1)
    assert first != second
    assert _near(out[60, 30], first) and _near(out[60, 50], first)  # on the edges a-b and b-c of the first
    assert np.all(out[60, 110] == GREY) and np.all(out[60, 130] == GREY)  # b scores 0.1: no edge touches it
    np.testing.assert_array_equal(out[60, 100], second)  # but a and c are drawn
    np.testing.assert_array_equal(out[60, 140], second)


def test_detections_without_keypoints_among_others_draw_none():
    dets = _two_people([0.9, 0.9])
    dets.keypoints[1] = np.nan
    out = draw_detections(_image(), dets, thickness=1)
    assert _near(out[60, 30], instance_color(0))
    assert np.all(out[60, 95:145] == GREY)


def test_labels_of_overlapping_boxes_do_not_cover_each_other():
    # The coffee photo's case: a cup and a bowl with nearly the same box.
    dets = Detections(
        np.array([[40, 40, 120, 110], [38, 42, 118, 112]], np.float32), [0.95, 0.87], [1, 0], ["bowl", "cup"]
    )
    out = draw_detections(_image(), dets, thickness=1)
    rows = [np.flatnonzero(np.all(out[:, 45] == class_color(c), axis=-1)) for c in (1, 0)]
    # Each label's filled background is a band of its class colour in column 45, and the bands are apart.
    cup, bowl = (set(r.tolist()) - {40, 42, 110, 112} for r in rows)
    assert len(cup) > 5 and len(bowl) > 5 and not cup & bowl
    assert max(cup) < 40  # the best-scored keeps the place above its box


def test_masks_of_another_size_are_refused():
    dets = _one_box(masks=np.zeros((1, 60, 80), bool))
    with pytest.raises(ImageConversionError, match=r"expected masks of the image size \(120, 160\), found \(60, 80\)"):
        draw_detections(_image(), dets)


def test_empty_detections_and_mono_input():
    out = draw_detections(np.full((20, 30), 7, np.uint8), Detections.empty(["cat"]))
    assert out.shape == (20, 30, 3) and np.all(out == 7)


def test_colorized_class_map_and_overlay():
    class_map = np.zeros((4, 5), np.uint8)
    class_map[1:3, 2:4] = 1
    class_map[3, 4] = 2
    seg = Segmentation(class_map, ["background", "person", "car"])
    colors = colorize_segmentation(seg)
    assert colors.shape == (4, 5, 3) and colors.dtype == np.uint8
    assert np.all(colors[0, 0] == 0)  # background is black
    np.testing.assert_array_equal(colors[1, 2], class_color(1))
    np.testing.assert_array_equal(colors[3, 4], class_color(2))
    assert tuple(colors[1, 2]) != tuple(colors[3, 4])
    image = _image(4, 5)
    out = overlay_segmentation(image, seg, alpha=0.25)
    assert np.all(out[class_map == 0] == GREY)  # background pixels untouched
    np.testing.assert_allclose(out[1, 2], np.round(0.25 * np.array(class_color(1)) + 0.75 * GREY), atol=1)
    assert np.all(image == GREY)
    with pytest.raises(ImageConversionError, match="class map of the image size"):
        overlay_segmentation(_image(8, 5), seg)
