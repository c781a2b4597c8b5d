"""Ground truth for bag frames: a COCO annotation file keyed to frames, or topics inside the bag.

A COCO file refers to bag frames through extra keys on each ``images`` entry:
``"ros_stamp_ns"`` (the image's ``header.stamp`` in nanoseconds, optionally with ``"ros_topic"``)
or ``"frame_index"`` (0-based position on the image topic). A frame listed with no annotation is
labelled "no objects" (every prediction on it is a false positive); a frame not listed is not
labelled and is left out of the scores. Keypoints follow COCO's keypoint format: the category
lists its ``keypoints`` names, each annotation of it ``keypoints`` as ``[x, y, v, ...]`` (v 0:
not labelled); one category with keypoints is scored (see
:class:`~dl_vision.evaluation.keypoint_metrics.KeypointAccumulator`).

Inside a bag, ground truth travels on a ``dl_vision/DetectionArray`` topic (boxes, optional masks)
or a mono8 class-map ``Image`` topic, with the header stamp of the image it describes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import Frame
from dl_vision.geometry import xywh_to_xyxy


@dataclasses.dataclass(eq=False)
class FrameTruth:
    """The ground truth of one frame.

    Attributes:
        boxes: (G, 4) float64 ``x_min, y_min, x_max, y_max`` pixels.
        class_names: G class names.
        iscrowd: (G,) bool crowd flags (matched but never counted as misses).
        masks: optional (G, H, W) bool instance masks.
        class_map: optional (H, W) uint8 class-id map (semantic segmentation).
        size: ``(width, height)`` of the image the truth was made for, when known.
        keypoints: optional (G, K, 3) ``(x, y, visibility)`` pixels in the order of the file's
            keypoint names (visibility 0 where not labelled, and for objects of other classes).
        coco_image: id of the COCO ``images`` entry this truth came from, when it did.
    """

    boxes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))
    class_names: List[str] = dataclasses.field(default_factory=list)
    iscrowd: Optional[np.ndarray] = None
    masks: Optional[np.ndarray] = None
    class_map: Optional[np.ndarray] = None
    size: Optional[Tuple[int, int]] = None
    keypoints: Optional[np.ndarray] = None
    coco_image: Optional[int] = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.iscrowd = np.zeros(len(self.boxes), bool) if self.iscrowd is None else np.asarray(self.iscrowd, bool)


class CocoGroundTruth:
    """A COCO annotation file whose images are bag frames.

    Args:
        path: the JSON file.
        topic: image topic being evaluated; images whose ``ros_topic`` names another topic are skipped.

    Raises:
        EvaluationError: unreadable JSON, missing COCO sections, or an image entry naming no frame.
    """

    def __init__(self, path, topic: Optional[str] = None) -> None:
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:  # ValueError: not UTF-8, not JSON
            reason = err.strerror if isinstance(err, OSError) and err.strerror else " ".join(str(err).split())
            raise EvaluationError("ground truth %s: expected a COCO JSON file, found %s" % (self.path, reason)) from err
        check_coco(data, "ground truth %s" % self.path)
        self.categories: Dict[int, str] = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        self.class_names = [self.categories[k] for k in sorted(self.categories)]
        with_keypoints = [c for c in data["categories"] if c.get("keypoints")]
        #: The category whose keypoints are scored (the first that names keypoints) and their names.
        self.keypoint_class: Optional[str] = str(with_keypoints[0]["name"]) if with_keypoints else None
        self.keypoint_names: List[str] = [str(n) for n in with_keypoints[0]["keypoints"]] if with_keypoints else []
        self.by_stamp: Dict[int, dict] = {}
        self.by_index: Dict[int, dict] = {}
        for image in data["images"]:
            if topic and image.get("ros_topic") not in (None, topic):
                continue
            if "ros_stamp_ns" in image:
                self.by_stamp[int(image["ros_stamp_ns"])] = image
            elif "frame_index" in image:
                self.by_index[int(image["frame_index"])] = image
            else:
                raise EvaluationError(
                    "ground truth %s: image %r needs 'ros_stamp_ns' or 'frame_index', found keys %s"
                    % (self.path, image.get("id"), sorted(image))
                )
        self.annotations: Dict[int, List[dict]] = {}
        for ann in data["annotations"]:
            self.annotations.setdefault(int(ann["image_id"]), []).append(ann)
        self.has_masks = bool(data["annotations"]) and all(a.get("segmentation") for a in data["annotations"])

    @property
    def num_images(self) -> int:
        """Number of labelled frames for the topic."""
        return len(self.by_stamp) + len(self.by_index)

    def lookup(self, frame: Frame) -> Optional[FrameTruth]:
        """The truth of ``frame`` (by stamp, then by index), or ``None`` when it is not labelled.

        The lookup keeps no state, so one parsed file serves any number of shards; which images
        were matched is read from :attr:`FrameTruth.coco_image`.
        """
        image = self.by_stamp.get(frame.stamp_ns) or self.by_index.get(frame.index)
        if image is None:
            return None
        width, height = image.get("width"), image.get("height")
        if width is None or height is None:
            width, height = frame.size()
        anns = self.annotations.get(int(image["id"]), [])
        boxes = xywh_to_xyxy([a["bbox"] for a in anns])
        masks = None
        if self.has_masks:
            masks = np.zeros((len(anns), height, width), bool)
            for i, ann in enumerate(anns):
                masks[i] = annotation_mask(ann["segmentation"], height, width)
        names = [self.categories[int(a["category_id"])] for a in anns]
        return FrameTruth(
            boxes,
            names,
            [bool(a.get("iscrowd", 0)) for a in anns],
            masks,
            size=(int(width), int(height)),
            keypoints=self._keypoints(anns, names) if self.keypoint_names else None,
            coco_image=int(image["id"]),
        )

    def _keypoints(self, anns: List[dict], names: List[str]) -> np.ndarray:
        """(G, K, 3) keypoints of one image's annotations (zeros for objects without)."""
        count = len(self.keypoint_names)
        out = np.zeros((len(anns), count, 3))
        for i, (ann, name) in enumerate(zip(anns, names)):
            if name == self.keypoint_class and ann.get("keypoints"):
                flat = np.asarray(ann["keypoints"], np.float64)
                if flat.size != 3 * count:
                    raise EvaluationError(
                        "ground truth %s: annotation %r: expected %d keypoint values (x, y, v for %d names), found %d"
                        % (self.path, ann.get("id"), 3 * count, count, flat.size)
                    )
                out[i] = flat.reshape(count, 3)
        return out


#: Largest image side a COCO entry may give (masks are allocated at this size).
MAX_IMAGE_SIDE = 65535


def check_coco(data: Any, source: str) -> None:
    """Check the parts of a COCO file the evaluation reads, so that a bad entry is one line up front.

    Args:
        data: the parsed JSON.
        source: what to name in messages (``"ground truth <path>"``).

    Raises:
        EvaluationError: naming the entry, what was expected and what was found.
    """

    def fail(where: str, expected: str, found: Any) -> EvaluationError:
        return EvaluationError("%s: %s: expected %s, found %s" % (source, where, expected, _short(found)))

    if not isinstance(data, dict):
        raise fail("top level", "an object with images, annotations and categories", data)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise fail(key, "a list", data.get(key))
    category_ids = set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise fail("categories[%d]" % i, "{id: integer, name: string}", cat)
        category_ids.add(cat["id"])
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not _is_int(image.get("id")):
            raise fail("images[%d]" % i, "an object with an integer id", image)
        for key in ("ros_stamp_ns", "frame_index"):
            if key in image and not (_is_int(image[key]) and image[key] >= 0):
                raise fail("images[%d].%s" % (i, key), "a non-negative integer", image[key])
        for key in ("width", "height"):
            if image.get(key) is not None and not (_is_int(image[key]) and 0 < image[key] <= MAX_IMAGE_SIDE):
                raise fail("images[%d].%s" % (i, key), "an integer in 1..%d" % MAX_IMAGE_SIDE, image[key])
        if image.get("ros_topic") is not None and not isinstance(image["ros_topic"], str):
            raise fail("images[%d].ros_topic" % i, "a topic name", image["ros_topic"])
    for i, ann in enumerate(data["annotations"]):
        where = "annotations[%d]" % i
        if not isinstance(ann, dict) or not _is_int(ann.get("image_id")) or not _is_int(ann.get("category_id")):
            raise fail(where, "an object with integer image_id and category_id", ann)
        if ann["category_id"] not in category_ids:
            raise fail(where + ".category_id", "one of %s" % sorted(category_ids), ann["category_id"])
        box = ann.get("bbox")
        if not (
            isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box) and box[2] >= 0 and box[3] >= 0
        ):
            raise fail(where + ".bbox", "[x, y, width, height] of finite numbers, sizes >= 0", box)
        if ann.get("iscrowd", 0) not in (0, 1):
            raise fail(where + ".iscrowd", "0 or 1", ann.get("iscrowd"))
        segmentation = ann.get("segmentation")
        if segmentation and not _is_segmentation(segmentation):
            raise fail(where + ".segmentation", "polygons [[x, y, ...], ...] or RLE {counts, size}", segmentation)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_segmentation(value: Any) -> bool:
    """Polygons (lists of at least 3 x, y pairs) or RLE (``counts`` list/string, ``size`` [h, w])."""
    if isinstance(value, list):
        return all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(_is_number(v) for v in p) for p in value
        )
    if isinstance(value, dict):
        size, counts = value.get("size"), value.get("counts")
        size_ok = (
            isinstance(size, list) and len(size) == 2 and all(_is_int(v) and 0 < v <= MAX_IMAGE_SIDE for v in size)
        )
        counts_ok = isinstance(counts, str) or (isinstance(counts, list) and all(_is_int(v) and v >= 0 for v in counts))
        return size_ok and counts_ok
    return False


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def annotation_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or uncompressed RLE) -> (H, W) bool mask."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation, counts=segmentation["counts"].encode("ascii"))
    return mask_utils.decode(rle).astype(bool)
