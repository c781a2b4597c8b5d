"""Decoders turn raw model outputs into :class:`~dl_vision.structures.Detections` or
:class:`~dl_vision.structures.Segmentation`, picked by a model spec's ``decoder.type``.

To add one, subclass :class:`~dl_vision.decoders.base.Decoder` (its ``__init__``
takes ``labels`` and the spec's ``decoder.params`` as keyword arguments) and
register it in :data:`DECODERS`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.errors import ConfigError
from dl_vision.registry import Registry

#: ``decoder type -> "module:Class"``, imported on first use.
DECODERS = Registry(
    "decoder",
    "decoder.type",
    "decoder.params",
    {
        "ssd_anchors": "dl_vision.decoders.ssd_anchors:SsdAnchorsDecoder",
        "semantic": "dl_vision.decoders.semantic:SemanticDecoder",
        "yolo": "dl_vision.decoders.yolo:YoloDecoder",
        "tf_od_api": "dl_vision.decoders.tf_od_api:TfOdApiDecoder",
        "tflite_ssd": "dl_vision.decoders.tflite_ssd:TfliteSsdDecoder",
        "movenet": "dl_vision.decoders.movenet:MoveNetDecoder",
        "landmarks": "dl_vision.decoders.landmarks:LandmarksDecoder",
    },
)

__all__ = ["DECODERS", "DecodeOptions", "Decoder", "create_decoder"]


def create_decoder(
    name: str,
    params: Optional[Mapping[str, Any]] = None,
    labels: Union[None, Sequence[str], Mapping[int, str]] = None,
) -> Decoder:
    """Build decoder ``name`` with the spec's ``decoder.params`` and label table.

    Raises:
        ConfigError: unknown decoder, unknown parameter, or a bad parameter value.
    """
    try:
        return DECODERS.create(name, params or {}, labels=labels)
    except (ValueError, ArithmeticError) as err:  # a value the constructor cannot use: float(""), 1 / 0, ...
        raise ConfigError("decoder.params: bad value for decoder %s: %s" % (name, err)) from err
