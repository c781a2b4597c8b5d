"""Model specs: one YAML file that says how to load, feed and decode a model.

A spec names the model file, its runtime format, how an image becomes the input
tensor, which decoder turns the outputs into results, the class names and the
default thresholds. Swapping in another model means writing another spec; no
code changes. The shipped ``config/models/face.yaml``, with the choices each field has::

    name: face
    description: BlazeFace full-range face detector (MediaPipe), 6 keypoints per face
    task: detection                     # detection | segmentation
    file: {asset: face_detection_full_range}   # or a path, relative to this file
    format: tflite                      # a registered backend: tflite | saved_model | keras | onnx | tensorrt
    input:
      size: [192, 192]                  # [height, width]; optional when the model's shape is static
      resize: letterbox                 # letterbox | stretch
      color: rgb                        # rgb | bgr | gray
      normalization: symmetric          # none | unit | symmetric | imagenet | {scale, offset} | {mean, std}
    decoder:
      type: ssd_anchors                 # a registered decoder
      params: {strides: [4], ...}       # the decoder's keyword arguments
    labels: [face]                      # list, {id: name} map, or a file (one name a line, or YAML)
    thresholds: {score: 0.6, nms_iou: 0.3, max_detections: 100}

``input`` also takes ``layout`` (auto | nhwc | nchw) and ``pad_value`` (letterbox fill,
0..255); ``thresholds`` also takes ``class_agnostic_nms`` and ``mask_threshold``; ``runtime``
(e.g. ``{threads: 2}``) holds keyword arguments of the backend.

A cascade (``task: cascade``, :class:`CascadeSpec`) names no model file of its own: it names a
detection spec whose detections of chosen classes are cropped and given to second-stage specs
(see :mod:`dl_vision.cascade` and ``config/models/person_pose.yaml``).

Every error names the spec file and the field: ``face.yaml: input.size:
expected [height, width] of positive integers, found [192]``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from dl_vision.backends import BACKENDS
from dl_vision.decoders.base import DecodeOptions
from dl_vision.errors import AssetError, ConfigError, ModelError
from dl_vision.structures import LabelTable

TASKS = ("detection", "segmentation")
#: What a cascade's second stage adds to each detection it runs on.
ATTACHMENTS = ("keypoints", "mask")
RESIZE_MODES = ("letterbox", "stretch")
COLORS = ("rgb", "bgr", "gray")
LAYOUTS = ("auto", "nhwc", "nchw")
#: Named normalisations, as ``(scale, offset)`` applied to 0..255 pixels.
NORMALIZATION_PRESETS: Dict[str, Tuple[float, float]] = {
    "none": (1.0, 0.0),  # raw 0..255 values (uint8 models, TF OD API)
    "unit": (1.0 / 255.0, 0.0),  # [0, 1]
    "symmetric": (1.0 / 127.5, -1.0),  # [-1, 1]
}

#: Environment variable: extra directories (``os.pathsep``-separated) searched for ``<name>.yaml``.
MODEL_PATH_ENV = "DL_VISION_MODEL_PATH"

_TOP_FIELDS = ("name", "task", "file", "format", "input", "decoder", "labels", "thresholds", "runtime", "description")
_CASCADE_FIELDS = ("name", "task", "description", "detector", "second_stages")
_STAGE_FIELDS = ("model", "classes", "attach", "margin", "square", "max_per_frame", "score")
_INPUT_FIELDS = ("size", "resize", "color", "layout", "normalization", "pad_value")
#: ``thresholds:`` keys and the :class:`DecodeOptions` fields they set.
_THRESHOLD_FIELDS = {
    "score": "score_threshold",
    "nms_iou": "nms_iou",
    "max_detections": "max_detections",
    "class_agnostic_nms": "class_agnostic_nms",
    "mask_threshold": "mask_threshold",
}


def _reason(err: Exception) -> str:
    """Why a file could not be read: the OS's reason, or where its text is not UTF-8."""
    if isinstance(err, UnicodeDecodeError):
        return "expected UTF-8 text, found byte 0x%02x at %d" % (err.object[err.start], err.start)
    return str(getattr(err, "strerror", None) or err)


def _spec_error(source: str, field: str, message: str) -> ConfigError:
    return ConfigError("%s: %s: %s" % (source, field, message))


def _number(source: str, field: str, value: Any) -> float:
    """A float from a YAML number or a fraction string like ``"1/127.5"``."""
    if isinstance(value, bool):
        raise _spec_error(source, field, "expected a number, found %r" % (value,))
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            if "/" in value:
                num, den = value.split("/", 1)
                return float(num) / float(den)
            return float(value)
        except (ValueError, ZeroDivisionError):
            pass
    raise _spec_error(source, field, "expected a number (or a fraction like 1/255), found %r" % (value,))


def _choice(source: str, field: str, value: Any, allowed: Sequence[str]) -> str:
    text = str(value).lower()
    if text not in allowed:
        raise _spec_error(source, field, "expected one of %s, found %r" % ("|".join(allowed), value))
    return text


def _mapping(source: str, field: str, value: Any, allowed: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _spec_error(source, field, "expected a mapping, found %s %r" % (type(value).__name__, value))
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise _spec_error(
                    source,
                    "%s.%s" % (field, key) if field else str(key),
                    "unknown field; expected one of %s" % ", ".join(allowed),
                )
    return dict(value)


@dataclasses.dataclass
class Normalization:
    """Per-channel affine map from 0..255 pixels to model values: ``(x - mean) / std``.

    Written as ``scale``/``offset`` (``x * scale + offset``) or ``mean``/``std``
    (in 0..255 units, in the model's channel order), or a preset name
    (``none``, ``unit``, ``symmetric``, ``imagenet``).

    Attributes:
        mean: one value for every channel, or one per channel, subtracted.
        std: one value for every channel, or one per channel, the divisor.
    """

    mean: Tuple[float, ...] = (0.0,)
    std: Tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)

    @classmethod
    def from_scale_offset(cls, scale: float, offset: float) -> "Normalization":
        # x * scale + offset == (x - (-offset / scale)) / (1 / scale)
        return cls([-offset / scale], [1.0 / scale])

    @classmethod
    def parse(cls, source: str, value: Any) -> "Normalization":
        """Build from a spec's ``input.normalization`` value."""
        field = "input.normalization"
        if value is None:
            return cls()
        if isinstance(value, str):
            key = value.lower()
            if key == "imagenet":
                return cls([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
            if key in NORMALIZATION_PRESETS:
                return cls.from_scale_offset(*NORMALIZATION_PRESETS[key])
            raise _spec_error(
                source,
                field,
                "expected a preset (%s, imagenet) or a mapping, found %r" % (", ".join(NORMALIZATION_PRESETS), value),
            )
        fields = _mapping(source, field, value, ("scale", "offset", "mean", "std"))
        if ("scale" in fields or "offset" in fields) and ("mean" in fields or "std" in fields):
            raise _spec_error(source, field, "give either scale/offset or mean/std, found both")
        if "mean" in fields or "std" in fields:
            vectors = []
            for key, default in (("mean", 0.0), ("std", 1.0)):
                raw = fields.get(key, default)
                raw = raw if isinstance(raw, (list, tuple)) else [raw]
                if len(raw) not in (1, 3):
                    raise _spec_error(source, "%s.%s" % (field, key), "expected 1 or 3 values, found %d" % len(raw))
                vectors.append([_number(source, "%s.%s" % (field, key), v) for v in raw])
            if any(s == 0 for s in vectors[1]):
                raise _spec_error(source, field + ".std", "expected non-zero values, found %s" % vectors[1])
            return cls(vectors[0], vectors[1])
        scale = _number(source, field + ".scale", fields.get("scale", 1.0))
        if scale == 0:
            raise _spec_error(source, field + ".scale", "expected a non-zero number, found 0")
        return cls.from_scale_offset(scale, _number(source, field + ".offset", fields.get("offset", 0.0)))


@dataclasses.dataclass
class InputSpec:
    """How an image becomes the model's input tensor.

    Attributes:
        size: (height, width) of the model input, or None to take it from the model.
        resize: ``"letterbox"`` (keep aspect, pad) or ``"stretch"``.
        color: channel order the model expects: ``"rgb"``, ``"bgr"`` or ``"gray"``.
        layout: ``"nhwc"``, ``"nchw"`` or ``"auto"`` (decided from the model's input shape).
        normalization: the pixel value map.
        pad_value: 0..255 value of letterbox padding (before normalisation).
    """

    size: Optional[Tuple[int, int]] = None
    resize: str = "letterbox"
    color: str = "rgb"
    layout: str = "auto"
    normalization: Normalization = dataclasses.field(default_factory=Normalization)
    pad_value: int = 0

    @classmethod
    def parse(cls, source: str, value: Any) -> "InputSpec":
        fields = _mapping(source, "input", value, _INPUT_FIELDS)
        size = fields.get("size")
        if size is not None:
            if isinstance(size, int) and not isinstance(size, bool):
                size = [size, size]
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            ):
                raise _spec_error(
                    source, "input.size", "expected [height, width] of positive integers, found %r" % (size,)
                )
        pad = fields.get("pad_value", 0)
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= 255:
            raise _spec_error(source, "input.pad_value", "expected an integer in 0..255, found %r" % (pad,))
        return cls(
            size=None if size is None else (size[0], size[1]),
            resize=_choice(source, "input.resize", fields.get("resize", "letterbox"), RESIZE_MODES),
            color=_choice(source, "input.color", fields.get("color", "rgb"), COLORS),
            layout=_choice(source, "input.layout", fields.get("layout", "auto"), LAYOUTS),
            normalization=Normalization.parse(source, fields.get("normalization")),
            pad_value=pad,
        )


@dataclasses.dataclass
class DecoderSpec:
    """Which decoder to use and its keyword arguments.

    Attributes:
        type: registered decoder name (see :mod:`dl_vision.decoders`).
        params: keyword arguments for the decoder's constructor.
    """

    type: str
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, source: str, value: Any) -> "DecoderSpec":
        if isinstance(value, str):
            value = {"type": value}
        fields = _mapping(source, "decoder", value, ("type", "params"))
        if not isinstance(fields.get("type"), str) or not fields["type"]:
            raise _spec_error(source, "decoder.type", "expected a decoder name, found %r" % (fields.get("type"),))
        return cls(fields["type"], _mapping(source, "decoder.params", fields.get("params")))


def _parse_thresholds(source: str, value: Any) -> DecodeOptions:
    """The ``thresholds:`` mapping as decode options; unset keys keep :class:`DecodeOptions`' defaults."""
    fields = _mapping(source, "thresholds", value, tuple(_THRESHOLD_FIELDS))
    values: Dict[str, Any] = {}
    for key in ("score", "nms_iou", "mask_threshold"):
        if key in fields:
            number = _number(source, "thresholds." + key, fields[key])
            if not 0.0 <= number <= 1.0:
                raise _spec_error(source, "thresholds." + key, "expected a value in [0, 1], found %r" % number)
            values[_THRESHOLD_FIELDS[key]] = number
    if "max_detections" in fields:
        cap = fields["max_detections"]
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise _spec_error(source, "thresholds.max_detections", "expected a positive integer, found %r" % (cap,))
        values["max_detections"] = cap
    if "class_agnostic_nms" in fields:
        if not isinstance(fields["class_agnostic_nms"], bool):
            raise _spec_error(
                source,
                "thresholds.class_agnostic_nms",
                "expected true or false, found %r" % (fields["class_agnostic_nms"],),
            )
        values["class_agnostic_nms"] = fields["class_agnostic_nms"]
    return DecodeOptions(**values)


def _parse_labels(source: str, base: Path, value: Any) -> LabelTable:
    """Labels from an inline list/map, or from a file (``labels: coco.txt`` or ``labels: {file: ...}``)."""
    if value is None:
        return {}
    if isinstance(value, Mapping) and set(value) == {"file"}:
        value = value["file"]
    if isinstance(value, str):
        path = Path(os.path.expanduser(value))
        path = path if path.is_absolute() else base / path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise _spec_error(source, "labels", "cannot read label file %s: %s" % (path, _reason(err))) from err
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            try:
                loaded = yaml.safe_load(text)
            except (yaml.YAMLError, RecursionError) as err:  # RecursionError: nesting deeper than the parser follows
                raise _spec_error(source, "labels", "label file %s is not valid YAML: %s" % (path, err)) from err
            return _parse_labels(source, base, loaded if not isinstance(loaded, str) else [loaded])
        return {i: line.strip() for i, line in enumerate(text.splitlines()) if line.strip()}
    if isinstance(value, (list, tuple)):
        return {i: str(name) for i, name in enumerate(value)}
    if isinstance(value, Mapping):
        table = {}
        for key, name in value.items():
            try:
                table[int(key)] = str(name)
            except (TypeError, ValueError):
                raise _spec_error(source, "labels", "expected integer class ids as keys, found %r" % (key,)) from None
        return table
    raise _spec_error(source, "labels", "expected a list, an {id: name} map or a file name, found %r" % (value,))


@dataclasses.dataclass
class ModelSpec:
    """A parsed, validated model spec.

    Attributes:
        name: short model name (published in messages and logs).
        task: ``"detection"`` or ``"segmentation"``.
        format: runtime format (a name registered in :data:`dl_vision.backends.BACKENDS`).
        input: how images become input tensors.
        decoder: decoder type and parameters.
        file: path of the model file, or None when it is an asset.
        asset: asset key (see :mod:`dl_vision.assets`) when the file is fetched.
        labels: ``{class_id: name}``.
        thresholds: default decode thresholds; a model works on its own copy.
        runtime: backend keyword arguments (``threads``, ``providers``, ...).
        source: where the spec came from (file path, or ``"<dict>"``).
        description: free text.
    """

    name: str
    task: str
    format: str
    input: InputSpec
    decoder: DecoderSpec
    file: Optional[Path] = None
    asset: Optional[str] = None
    labels: LabelTable = dataclasses.field(default_factory=dict)
    thresholds: DecodeOptions = dataclasses.field(default_factory=DecodeOptions)
    runtime: Dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "<dict>"
    description: str = ""

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", base_dir: Optional[Path] = None) -> "ModelSpec":
        """Validate a spec mapping (as loaded from YAML).

        Args:
            data: the mapping.
            source: name used in error messages (the spec file).
            base_dir: directory relative model and label paths are resolved against.

        Raises:
            ConfigError: naming the source and the offending field.
        """
        base = base_dir or Path.cwd()
        fields = _mapping(source, "", data, _TOP_FIELDS)
        for required in ("name", "task", "file", "format", "decoder"):
            if fields.get(required) in (None, ""):
                raise _spec_error(source, required, "required field is missing")
        name = fields["name"]
        if not isinstance(name, str):
            raise _spec_error(source, "name", "expected a string, found %r" % (name,))
        task = _choice(source, "task", fields["task"], TASKS)
        fmt = _choice(source, "format", fields["format"], BACKENDS.names())
        file_value, path, asset = fields["file"], None, None
        if isinstance(file_value, Mapping):
            entry = _mapping(source, "file", file_value, ("asset",))
            if not isinstance(entry.get("asset"), str):
                raise _spec_error(source, "file.asset", "expected an asset key, found %r" % (entry.get("asset"),))
            asset = entry["asset"]
            from dl_vision import assets  # imported here: specs load without the asset table otherwise

            if asset not in assets.ASSETS or assets.ASSETS[asset].kind != "model":
                raise _spec_error(
                    source, "file.asset", "expected one of %s, found %r" % (", ".join(assets.MODELS), asset)
                )
        elif isinstance(file_value, str):
            path = Path(os.path.expandvars(os.path.expanduser(file_value)))
            path = path if path.is_absolute() else base / path
        else:
            raise _spec_error(source, "file", "expected a path or {asset: <key>}, found %r" % (file_value,))
        runtime = _mapping(source, "runtime", fields.get("runtime"))
        description = fields.get("description") or ""
        return cls(
            name=name,
            task=task,
            format=fmt,
            input=InputSpec.parse(source, fields.get("input")),
            decoder=DecoderSpec.parse(source, fields["decoder"]),
            file=path,
            asset=asset,
            labels=_parse_labels(source, base, fields.get("labels")),
            thresholds=_parse_thresholds(source, fields.get("thresholds")),
            runtime=runtime,
            source=source,
            description=str(description),
        )

    def model_path(self) -> Path:
        """The model file on disk, fetching the asset first when the spec names one.

        Raises:
            ModelError: the file does not exist.
            AssetError: the asset could not be fetched.
        """
        if self.asset is not None:
            from dl_vision import assets

            try:
                return assets.fetch(self.asset)
            except AssetError as err:
                raise AssetError("%s: file.asset %s: %s" % (self.source, self.asset, err)) from err
        assert self.file is not None
        if not os.path.exists(self.file):  # os.path: False, not OSError, for a name too long
            raise ModelError("%s: file: model file %s does not exist" % (self.source, self.file))
        return self.file


@dataclasses.dataclass
class SecondStageSpec:
    """One second stage of a cascade: which detections it runs on, how they are cropped, what it adds.

    Attributes:
        model: the second model's spec (``detection`` for keypoints, ``segmentation`` for masks).
        classes: first-stage class names whose detections it runs on.
        attach: ``"keypoints"`` (the best detection's keypoints and scores in the crop) or
            ``"mask"`` (the crop's pixels of the detection's class, or of any non-background
            class when the segmenter does not name it, inside the detection's box).
        margin: added on each side of the box, as a fraction of its width and height.
        square: grow the crop's shorter side to a square (for models trained on square crops,
            which letterbox would otherwise shrink).
        max_per_frame: second-stage runs per frame at most; the largest boxes go first.
        score: the second model's score threshold, or None to keep its spec's.
    """

    model: ModelSpec
    classes: Tuple[str, ...]
    attach: str
    margin: float = 0.1
    square: bool = True
    max_per_frame: int = 10
    score: Optional[float] = None


@dataclasses.dataclass
class CascadeSpec:
    """A parsed, validated two-stage model: a detector, then second stages on chosen detections.

    Attributes:
        name: short model name (published in messages and logs).
        detector: the first stage's spec (``task: detection``).
        second_stages: what runs on the crops; at most one attaches keypoints.
        source: where the spec came from.
        description: free text.
        task: always ``"cascade"``.
    """

    name: str
    detector: ModelSpec
    second_stages: List[SecondStageSpec]
    source: str = "<dict>"
    description: str = ""
    task: str = "cascade"

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", base_dir: Optional[Path] = None) -> "CascadeSpec":
        """Validate a cascade mapping (as loaded from YAML); the specs it names are loaded too.

        Raises:
            ConfigError: naming the source and the offending field.
        """
        base = base_dir or Path.cwd()
        fields = _mapping(source, "", data, _CASCADE_FIELDS)
        for required in ("name", "detector", "second_stages"):
            if fields.get(required) in (None, "", []):
                raise _spec_error(source, required, "required field is missing")
        if not isinstance(fields["name"], str):
            raise _spec_error(source, "name", "expected a string, found %r" % (fields["name"],))
        detector = _stage_spec(source, "detector", fields["detector"], base, "detection")
        if not isinstance(fields["second_stages"], list):
            raise _spec_error(
                source, "second_stages", "expected a list of stages, found %r" % (fields["second_stages"],)
            )
        stages = [
            _second_stage(source, "second_stages[%d]" % i, value, base, detector)
            for i, value in enumerate(fields["second_stages"])
        ]
        if sum(stage.attach == "keypoints" for stage in stages) > 1:
            raise _spec_error(source, "second_stages", "expected at most one stage that attaches keypoints, found more")
        return cls(
            name=fields["name"],
            detector=detector,
            second_stages=stages,
            source=source,
            description=str(fields.get("description") or ""),
        )


def _stage_spec(source: str, field: str, value: Any, base: Path, task: str) -> ModelSpec:
    """The spec a cascade names (a name, or a path relative to the cascade's file), of the given task."""
    if not isinstance(value, str) or not value:
        raise _spec_error(source, field, "expected a model spec name or path, found %r" % (value,))
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and (path.suffix.lower() in (".yaml", ".yml") or "/" in value):
        value = str(base / path)
    try:
        spec = load_spec(value, allow_cascade=False)
    except ConfigError as err:
        raise _spec_error(source, field, str(err)) from err
    if spec.task != task:
        raise _spec_error(source, field, "expected a %s spec, found %s (task %s)" % (task, value, spec.task))
    assert isinstance(spec, ModelSpec)
    return spec


def _second_stage(source: str, field: str, value: Any, base: Path, detector: ModelSpec) -> SecondStageSpec:
    fields = _mapping(source, field, value, _STAGE_FIELDS)
    attach = _choice(source, field + ".attach", fields.get("attach"), ATTACHMENTS)
    model = _stage_spec(
        source, field + ".model", fields.get("model"), base, "detection" if attach == "keypoints" else "segmentation"
    )
    classes = fields.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _spec_error(source, field + ".classes", "expected a list of class names, found %r" % (classes,))
    unknown = [c for c in classes if c not in detector.labels.values()]
    if unknown:
        raise _spec_error(
            source, field + ".classes", "expected classes of the detector %s, found %s" % (detector.name, unknown)
        )
    margin = _number(source, field + ".margin", fields.get("margin", 0.1))
    if not 0.0 <= margin <= 2.0:
        raise _spec_error(source, field + ".margin", "expected a fraction of the box in [0, 2], found %r" % margin)
    square = fields.get("square", True)
    if not isinstance(square, bool):
        raise _spec_error(source, field + ".square", "expected true or false, found %r" % (square,))
    cap = fields.get("max_per_frame", 10)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise _spec_error(source, field + ".max_per_frame", "expected a positive integer, found %r" % (cap,))
    score = fields.get("score")
    if score is not None:
        score = _number(source, field + ".score", score)
        if not 0.0 <= score <= 1.0:
            raise _spec_error(source, field + ".score", "expected a value in [0, 1], found %r" % score)
    return SecondStageSpec(model, tuple(classes), attach, margin, square, cap, score)


def spec_search_path() -> List[Path]:
    """Directories searched for ``<name>.yaml``: ``$DL_VISION_MODEL_PATH``, then the package's ``config/models``."""
    dirs = [Path(p) for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p]
    source_tree = Path(__file__).resolve().parents[2] / "config" / "models"
    dirs.append(source_tree)
    if not source_tree.is_dir():
        # Installed with catkin: the module lives in dist-packages, the YAML in share/dl_vision.
        try:
            import rospkg

            dirs.append(Path(rospkg.RosPack().get_path("dl_vision")) / "config" / "models")
        except Exception:  # rospkg missing or package not on ROS_PACKAGE_PATH: keep the other dirs
            pass
    return dirs


def available_specs() -> List[str]:
    """Names of the specs found on :func:`spec_search_path`."""
    names = set()
    for d in spec_search_path():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def resolve_spec_path(name_or_path: Union[str, Path]) -> Path:
    """The spec file for a name (``"face"``) or a path (``"my_model.yaml"``).

    Raises:
        ConfigError: nothing matches.
    """
    text = str(name_or_path)
    candidate = Path(os.path.expanduser(text))
    if candidate.suffix.lower() in (".yaml", ".yml") or os.sep in text:
        if os.path.isdir(candidate):
            raise ConfigError("model spec %s: expected a YAML file, found a directory" % candidate)
        if not os.path.isfile(candidate):  # os.path: False, not OSError, for a name too long
            raise ConfigError("model spec file %s does not exist" % candidate)
        return candidate
    for d in spec_search_path():
        path = d / (text + ".yaml")
        if os.path.isfile(path):
            return path
    raise ConfigError(
        "unknown model spec %r: expected a .yaml path or one of %s"
        % (text, ", ".join(available_specs()) or "(none found)")
    )


AnySpec = Union[ModelSpec, CascadeSpec]


def load_spec(name_or_path: Union[str, Path, ModelSpec, CascadeSpec], allow_cascade: bool = True) -> AnySpec:
    """Load and validate a spec by name (``"face"``) or YAML path.

    Args:
        name_or_path: a spec name, a YAML path, or a spec (returned as it is).
        allow_cascade: False refuses a cascade (a cascade's stages are single models).

    Returns:
        A :class:`ModelSpec`, or a :class:`CascadeSpec` for ``task: cascade``.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is invalid.
    """
    if isinstance(name_or_path, (ModelSpec, CascadeSpec)):
        return name_or_path
    path = resolve_spec_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("cannot read model spec %s: %s" % (path, _reason(err))) from err
    except (yaml.YAMLError, RecursionError) as err:  # RecursionError: nesting deeper than the parser follows
        detail = " ".join(str(err).split())
        raise ConfigError("%s: not valid YAML: %s" % (path, detail)) from err
    if isinstance(data, Mapping) and str(data.get("task")).lower() == "cascade":
        if not allow_cascade:
            raise ConfigError("%s: expected a single model, found a cascade (task: cascade)" % path)
        return CascadeSpec.from_dict(data, source=str(path), base_dir=path.parent)
    return ModelSpec.from_dict(data, source=str(path), base_dir=path.parent)
