"""Making evaluation bags and labelling kits.

:func:`make_eval_bag` turns an image folder or a video (plus optional COCO annotations of it) into
a bag with an image topic, ground truth as a ``DetectionArray`` topic, and a COCO file keyed to
the bag's frames by header stamp. :func:`export_bag_frames` goes the other way: a bag's frames as
PNG files and a COCO skeleton (images keyed by stamp, no annotations yet) for a labelling tool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import BagReader, BagWriter
from dl_vision.evaluation.ground_truth import annotation_mask
from dl_vision.geometry import xywh_to_xyxy
from dl_vision.image_sources import iter_image_folder
from dl_vision.structures import Detections

#: Default first header stamp of a made bag (2023-11-14T22:13:20Z), nanoseconds.
DEFAULT_START_NS = 1_700_000_000 * 10**9


def read_source(source) -> Iterator[Tuple[str, np.ndarray]]:
    """``(name, BGR image)`` of every image in a folder (sorted by name) or every frame of a video."""
    path = Path(source)
    if path.is_dir():
        yield from iter_image_folder(path)
        return
    capture = cv2.VideoCapture(str(path))
    if not path.is_file() or not capture.isOpened():
        raise EvaluationError("source: expected an image folder or a video file, found %s" % path)
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield "frame_%06d" % index, image
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise EvaluationError("video %s: no frame could be decoded" % path)


def make_eval_bag(
    source,
    bag,
    topic: str = "/camera/image_raw",
    annotations=None,
    rate_hz: float = 10.0,
    start_ns: int = DEFAULT_START_NS,
    gt_topic: Optional[str] = "/ground_truth/detections",
    gt_json=None,
    compressed: Optional[str] = None,
    frame_id: str = "camera",
    class_maps=None,
    class_map_topic: str = "/ground_truth/class_map",
) -> Dict[str, object]:
    """Write an evaluation bag from images or a video.

    Args:
        source: image folder (frames in file-name order) or video file.
        bag: the bag to create.
        topic: image topic (``sensor_msgs/Image`` bgr8, or ``CompressedImage`` with ``compressed``).
        annotations: optional COCO file of the source; images are matched by ``file_name`` (folder)
            or ``frame_index`` (video, also accepted for folders).
        rate_hz: frame rate; frame i gets header stamp and bag time ``start_ns + i / rate_hz``.
        start_ns: stamp of the first frame.
        gt_topic: ``DetectionArray`` topic for the annotations (``None``: none written).
        gt_json: where to write the annotations keyed by ``ros_stamp_ns`` (default: beside the bag).
        compressed: ``"jpeg"`` or ``"png"`` for a ``CompressedImage`` topic.
        frame_id: header frame id.
        class_maps: optional folder of mono8 PNG class-id maps named like the source images
            (``<stem>.png``); each found one is written on ``class_map_topic``.
        class_map_topic: topic of the class-map ground truth.

    Returns:
        ``{"frames", "labelled", "class_maps", "bag", "ground_truth"}``.
    """
    coco = _read_coco(annotations) if annotations else None
    by_name: Dict[str, dict] = {}
    by_index: Dict[int, dict] = {}
    if coco:
        for image in coco["images"]:
            if "frame_index" in image:
                by_index[int(image["frame_index"])] = image
            if "file_name" in image:
                by_name[Path(image["file_name"]).name] = image
    anns: Dict[int, List[dict]] = {}
    for ann in (coco or {}).get("annotations", []):
        anns.setdefault(int(ann["image_id"]), []).append(ann)
    labels = {int(c["id"]) - 1: str(c["name"]) for c in (coco or {}).get("categories", [])}
    out_images: List[dict] = []
    count = maps = 0
    period = int(round(1e9 / rate_hz))
    with BagWriter(bag) as writer:
        for index, (name, image) in enumerate(read_source(source)):
            stamp = start_ns + index * period
            writer.write_image(topic, stamp, image, frame_id=frame_id, compressed=compressed)
            count += 1
            map_path = Path(class_maps) / (Path(name).stem + ".png") if class_maps else None
            if map_path is not None and map_path.is_file():
                class_map = cv2.imread(str(map_path), cv2.IMREAD_UNCHANGED)
                if class_map is None or class_map.shape != image.shape[:2]:
                    raise EvaluationError(
                        "class map %s: expected a %dx%d single-channel PNG, found %s"
                        % (map_path, image.shape[1], image.shape[0], None if class_map is None else class_map.shape)
                    )
                writer.write_class_map(class_map_topic, stamp, class_map.astype(np.uint8), frame_id=frame_id)
                maps += 1
            entry = by_name.get(name) or by_index.get(index)
            if entry is None:
                continue
            height, width = image.shape[:2]
            out_images.append(
                dict(entry, ros_stamp_ns=stamp, ros_topic=topic, frame_index=index, width=width, height=height)
            )
            if gt_topic:
                writer.write_detections(
                    gt_topic,
                    stamp,
                    _coco_detections(anns.get(int(entry["id"]), []), labels, height, width),
                    width,
                    height,
                    model="ground_truth",
                    frame_id=frame_id,
                )
    if coco and not out_images:
        raise EvaluationError(
            "annotations %s: none of its images matches a frame of %s by file_name or frame_index"
            % (annotations, source)
        )
    if class_maps and not maps:
        raise EvaluationError("class maps: expected <image stem>.png files in %s, found none matching" % class_maps)
    result: Dict[str, object] = {
        "frames": count,
        "labelled": len(out_images),
        "class_maps": maps,
        "bag": str(bag),
        "ground_truth": None,
    }
    if coco:
        gt_path = Path(gt_json) if gt_json else Path(bag).with_suffix(".gt.json")
        gt_path.write_text(json.dumps(dict(coco, images=out_images), indent=1))
        result["ground_truth"] = str(gt_path)
    return result


def _read_coco(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise EvaluationError("annotations: expected a COCO JSON file at %s (%s)" % (path, err)) from err
    if not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise EvaluationError("annotations %s: expected 'images', 'annotations' and 'categories' lists" % path)
    return data


def _coco_detections(anns: Sequence[dict], labels: Dict[int, str], height: int, width: int) -> Detections:
    """COCO annotations of one image -> :class:`Detections` (category id c -> class id c - 1)."""
    if not anns:
        return Detections.empty(labels)
    boxes = xywh_to_xyxy([a["bbox"] for a in anns])
    masks = None
    if all(a.get("segmentation") for a in anns):
        masks = np.stack([annotation_mask(a["segmentation"], height, width) for a in anns])
    return Detections(
        boxes, np.ones(len(anns), np.float32), [int(a["category_id"]) - 1 for a in anns], labels, masks=masks
    )


def export_bag_frames(bag, topic: str, out_dir, every: int = 1, class_names: Sequence[str] = ()) -> Dict[str, object]:
    """Write every ``every``-th frame of ``topic`` as PNG plus a COCO skeleton ``annotations.json``.

    The skeleton's images carry ``ros_topic``, ``ros_stamp_ns`` and ``frame_index``, so once
    labelled it is ground truth for :func:`dl_vision.evaluation.offline.evaluate_bag` as is.

    Returns:
        ``{"frames": written, "annotations": path}``.
    """
    if every < 1:
        raise EvaluationError("export: expected --every >= 1, found %d" % every)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    with BagReader(bag) as reader:
        for frame in reader.frames(topic):
            if frame.index % every:
                continue
            name = "frame_%06d.png" % frame.index
            image = frame.image()
            cv2.imwrite(str(out / name), image)
            height, width = image.shape[:2]
            images.append(
                {
                    "id": len(images) + 1,
                    "file_name": name,
                    "width": width,
                    "height": height,
                    "ros_topic": topic,
                    "ros_stamp_ns": frame.stamp_ns,
                    "frame_index": frame.index,
                }
            )
    skeleton = {
        "images": images,
        "annotations": [],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(skeleton, indent=1))
    return {"frames": len(images), "annotations": str(path)}
