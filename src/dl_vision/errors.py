"""The package's exception hierarchy.

Every error a user can cause (a bad spec, a missing model, an unknown image
encoding) is raised as one of these with a one-line message naming what was
expected and what was found; command-line entry points print that line and exit
non-zero instead of showing a traceback.
"""


class DlVisionError(Exception):
    """Base class of all dl_vision errors."""


class ConfigError(DlVisionError):
    """A model spec, parameter or YAML file is invalid."""


class ModelError(DlVisionError):
    """A model file is missing, unreadable, or disagrees with its spec."""


class BackendUnavailableError(ModelError):
    """The runtime a model needs (TFLite, TensorFlow, ONNX Runtime, TensorRT) is not installed."""


class AssetError(DlVisionError):
    """A downloadable asset (default model, sample image) could not be fetched or verified."""


class ImageConversionError(DlVisionError):
    """An image message or array cannot be turned into pixels."""


class EvaluationError(DlVisionError):
    """Evaluation inputs (bag, topics, ground truth) are unusable."""


def one_line(err: BaseException) -> str:
    """A foreign exception's message on one line (whitespace collapsed, at most 300 characters),
    or its type's name when it has none: for wrapping it into one of the errors above."""
    return " ".join(str(err).split())[:300] or type(err).__name__
