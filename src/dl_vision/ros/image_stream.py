"""Play still images as a camera topic: the demo's camera, and a handy test source.

``image_stream`` publishes the images named by ``~images`` (asset names such as
``astronaut``, image files, or directories of images) in turn at ``~rate`` Hz,
``~loops`` times, stamping each frame with the current time and ``~frame_id``,
then exits. Greyscale files go out as ``mono8``, colour as ``bgr8`` (and as
JPEG on ``image/compressed`` with ``~transport: compressed``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np
import rospy
from sensor_msgs.msg import CompressedImage, Image

from dl_vision import assets, messages
from dl_vision.errors import AssetError, ConfigError, DlVisionError

DEFAULT_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "camera")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        found = "nothing readable" if image is None else image.dtype
        raise AssetError("%s: expected an 8-bit image file OpenCV can read, found %s" % (path, found))
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def load_frames(sources: Sequence[str]) -> List[Tuple[str, np.ndarray]]:
    """Resolve ``sources`` into ``(name, image)`` pairs in play order.

    Args:
        sources: asset names (see :mod:`dl_vision.assets`), image files, or
            directories (their image files, sorted by name).

    Returns:
        Names and (H, W, 3) BGR or (H, W) greyscale uint8 images.

    Raises:
        ConfigError: no sources, or a directory without images.
        AssetError: a file cannot be read or an asset cannot be fetched.
    """
    frames: List[Tuple[str, np.ndarray]] = []
    for source in sources:
        path = Path(str(source)).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                suffixes = "/".join(IMAGE_SUFFIXES)
                raise ConfigError("%s: expected a directory with %s images, found none" % (path, suffixes))
            frames.extend((p.name, _read(p)) for p in files)
        elif path.is_file():
            frames.append((path.name, _read(path)))
        else:
            frames.append((str(source), _read(assets.fetch(str(source)))))
    if not frames:
        raise ConfigError("~images: expected at least one asset name, file or directory, found none")
    return frames


def run(
    frames: Sequence[Tuple[str, np.ndarray]],
    rate_hz: float,
    loops: int,
    transport: str,
    frame_id: str,
    wait_seconds: float,
    quality: int = 90,
) -> int:
    """Publish ``frames`` on ``image`` (or ``image/compressed``); returns the number published."""
    if transport == "compressed":
        topic = rospy.resolve_name("image") + "/compressed"
        publisher = rospy.Publisher(topic, CompressedImage, queue_size=2)
        outgoing: List[Union[Image, CompressedImage]] = [
            messages.bgr_to_compressed_msg(image, "jpeg", quality=quality) for _, image in frames
        ]
    elif transport == "raw":
        topic = rospy.resolve_name("image")
        publisher = rospy.Publisher(topic, Image, queue_size=2)
        outgoing = [messages.bgr_to_image_msg(image) for _, image in frames]
    else:
        raise ConfigError("~transport: expected raw|compressed, found %r" % (transport,))
    deadline = time.monotonic() + wait_seconds
    while publisher.get_num_connections() == 0 and time.monotonic() < deadline and not rospy.is_shutdown():
        time.sleep(0.05)
    if publisher.get_num_connections() == 0:
        rospy.logwarn(
            "%s: nobody subscribed to %s after %.0f s; publishing anyway", rospy.get_name(), topic, wait_seconds
        )
    period = rospy.Rate(rate_hz)
    published, loop = 0, 0
    while (loops <= 0 or loop < loops) and not rospy.is_shutdown():
        for (name, _image), message in zip(frames, outgoing):
            if rospy.is_shutdown():
                break
            message.header.stamp = rospy.Time.now()
            message.header.frame_id = frame_id
            message.header.seq = published
            publisher.publish(message)
            rospy.loginfo("%s: frame %d = %s", rospy.get_name(), published, name)
            published += 1
            period.sleep()
        loop += 1
    time.sleep(0.5)  # let the last frame leave the socket before the node exits
    return published


def main(argv: Sequence[str]) -> int:
    """``image_stream`` entry point; bad parameters or images are one fatal log line and exit 1."""
    rospy.init_node("image_stream", argv=list(argv))
    try:
        sources = rospy.get_param("~images", list(DEFAULT_IMAGES))
        if isinstance(sources, str):
            sources = [s.strip() for s in sources.split(",") if s.strip()]
        frames = load_frames(sources)
        count = run(
            frames,
            rate_hz=float(rospy.get_param("~rate", 2.0)),
            loops=int(rospy.get_param("~loops", 3)),
            transport=str(rospy.get_param("~transport", "raw")),
            frame_id=str(rospy.get_param("~frame_id", "camera")),
            wait_seconds=float(rospy.get_param("~wait_for_subscribers", 60.0)),
            quality=int(rospy.get_param("~jpeg_quality", 90)),
        )
    except DlVisionError as err:
        rospy.logfatal("%s: %s", rospy.get_name(), err)
        return 1
    rospy.loginfo("%s: published %d frames", rospy.get_name(), count)
    return 0
