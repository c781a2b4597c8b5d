"""Decoders turn raw model outputs into :class:`~dl_vision.structures.Detections` or
:class:`~dl_vision.structures.Segmentation`, picked by a model spec's ``decoder.type``.

To add one, subclass :class:`~dl_vision.decoders.base.Decoder` (its ``__init__``
takes ``labels`` and the spec's ``decoder.params`` as keyword arguments) and
register it in :data:`DECODERS`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict, Mapping, Optional, Sequence, Type, Union

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.errors import ConfigError

#: ``decoder type -> "module:Class"``, imported on first use.
DECODERS: Dict[str, str] = {
    "ssd_anchors": "dl_vision.decoders.ssd_anchors:SsdAnchorsDecoder",
    "semantic": "dl_vision.decoders.semantic:SemanticDecoder",
    "tf_od_api": "dl_vision.decoders.tf_od_api:TfOdApiDecoder",
    "tflite_ssd": "dl_vision.decoders.tflite_ssd:TfliteSsdDecoder",
    "yolo": "dl_vision.decoders.yolo:YoloDecoder",
}

__all__ = ["DECODERS", "DecodeOptions", "Decoder", "create_decoder", "decoder_class"]


def decoder_class(name: str) -> Type[Decoder]:
    """The decoder class registered as ``name``.

    Raises:
        ConfigError: no decoder has that name.
    """
    try:
        target = DECODERS[name]
    except KeyError:
        raise ConfigError(
            "decoder.type: unknown decoder %r; expected one of %s" % (name, ", ".join(sorted(DECODERS)))
        ) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_decoder(
    name: str,
    params: Optional[Mapping[str, Any]] = None,
    labels: Union[None, Sequence[str], Mapping[int, str]] = None,
) -> Decoder:
    """Build decoder ``name`` with the spec's ``decoder.params`` and label table.

    Raises:
        ConfigError: unknown decoder, unknown parameter, or a bad parameter value.
    """
    cls = decoder_class(name)
    params = dict(params or {})
    signature = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
        accepted = [n for n in signature if n not in ("self", "labels")]
        for key in params:
            if key not in accepted:
                raise ConfigError(
                    "decoder.params.%s: not a parameter of decoder %s; expected one of %s"
                    % (key, name, ", ".join(accepted) or "(none)")
                )
    try:
        return cls(labels=labels, **params)
    except TypeError as err:
        raise ConfigError("decoder.params: bad parameters for decoder %s: %s" % (name, err)) from err
