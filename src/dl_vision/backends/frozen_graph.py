"""TensorFlow 1 frozen graphs (``format: frozen_graph``): a ``GraphDef`` ``.pb`` run in a compat session.

The TF1 Object Detection API model zoo (``ssd_mobilenet_v2_coco_2018_03_29`` and kin) ships
its detectors as ``frozen_inference_graph.pb``: one ``GraphDef`` with the weights folded in
as constants. TensorFlow 2 still runs such graphs through ``tf.compat.v1``: the graph is
imported into its own ``tf.Graph`` and run by a ``tf.compat.v1.Session``. The session was
chosen over wrapping the import in ``tf.compat.v1.wrap_function``: as fast per frame, a
seventh of the load time, and per-model thread counts (see ``docs/measurements.md``).

A frozen graph carries no signature, so the spec names its tensors under ``runtime``::

    runtime:
      inputs: [image_tensor]
      outputs: [detection_boxes, detection_scores, detection_classes, num_detections]
      threads: 2

Names may be given as ``op`` (output 0 of that op) or ``op:N``; results are keyed by the
names as given without a ``:0`` suffix, so decoders see ``detection_boxes``, not
``detection_boxes:0``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from dl_vision.backends.base import Backend, TensorInfo, check_feeds, check_threads
from dl_vision.backends.tensorflow import import_tensorflow
from dl_vision.errors import ConfigError, ModelError, one_line

LOGGER = logging.getLogger("dl_vision")


def read_graph_def(tf: Any, path: Path) -> Any:
    """The ``GraphDef`` of a binary frozen-graph file.

    Raises:
        ModelError: the file is not a binary GraphDef.
    """
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError has no common base with OSError
        raise ModelError("%s is not a binary TensorFlow GraphDef: %s" % (path, one_line(err))) from err
    return graph_def


def tensor_names(field: str, names: Any) -> List[str]:
    """Check a spec's list of tensor names and return them as ``op:N`` graph names.

    Raises:
        ConfigError: not a non-empty list of non-empty strings.
    """
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError("runtime.%s: expected a list of tensor names, e.g. [image_tensor], found %r" % (field, names))
    return [n if ":" in n else n + ":0" for n in names]


def short_name(tensor_name: str) -> str:
    """``detection_boxes:0`` -> ``detection_boxes``; other outputs of an op keep their ``:N``."""
    return tensor_name[:-2] if tensor_name.endswith(":0") else tensor_name


class FrozenGraphBackend(Backend):
    """A TF1 frozen ``GraphDef`` in a ``tf.compat.v1.Session``.

    Args:
        path: the ``.pb`` file (binary ``GraphDef``).
        inputs: input tensor names, fed in this order (default: every ``Placeholder`` op).
        outputs: output tensor names to fetch (required: a graph has no signature).
        threads: intra- and inter-op threads of the session (None: TensorFlow's default, one per core).

    Raises:
        BackendUnavailableError: TensorFlow is not installed.
        ConfigError: no outputs named, or a bad thread count.
        ModelError: the file is missing or not a GraphDef, or a named tensor is not in the graph.
    """

    runtime = "tensorflow"

    def __init__(
        self,
        path: Union[str, Path],
        inputs: Optional[Sequence[str]] = None,
        outputs: Optional[Sequence[str]] = None,
        threads: Optional[int] = None,
    ) -> None:
        path = Path(path)
        check_threads(threads)
        fetch_names = tensor_names("outputs", outputs)
        if not path.is_file():
            raise ModelError("frozen graph file %s does not exist" % path)
        tf = import_tensorflow()
        self._tf = tf
        graph_def = read_graph_def(tf, path)
        graph = tf.Graph()
        try:
            with graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as err:
            raise ModelError("%s cannot be imported as a TensorFlow graph: %s" % (path, one_line(err))) from err
        placeholders = [op.name for op in graph.get_operations() if op.type == "Placeholder"]
        feed_names = tensor_names("inputs", placeholders if inputs is None else inputs)
        self._feeds = [self._tensor(graph, name, placeholders, path) for name in feed_names]
        self._fetches = [self._tensor(graph, name, placeholders, path) for name in fetch_names]
        config = tf.compat.v1.ConfigProto()
        config.gpu_options.allow_growth = True  # on a GPU build, as the other TensorFlow backends
        if threads is not None:
            config.intra_op_parallelism_threads = threads
            config.inter_op_parallelism_threads = threads
        self._session = tf.compat.v1.Session(graph=graph, config=config)
        self.path = path
        self.inputs: List[TensorInfo] = [self._info(t) for t in self._feeds]
        self.outputs: List[TensorInfo] = [self._info(t) for t in self._fetches]
        self._warm_up()

    def _warm_up(self) -> None:
        """Run once on zeros: the session optimises the graph on its first run (5 s for SSD-MobileNet-v2).

        That cost belongs to loading, not to a node's first frame. Dynamic dimensions get 1 (batch) and
        32 (others); a graph that refuses such an input just pays on its first real run.
        """
        feeds = {
            tensor: np.zeros(
                [(1 if i == 0 else 32) if d is None else d for i, d in enumerate(info.shape)], dtype=info.dtype
            )
            for tensor, info in zip(self._feeds, self.inputs)
        }
        try:
            self._session.run(self._fetches, feeds)
        except (ValueError, self._tf.errors.OpError) as err:
            LOGGER.info("frozen graph %s: no warm-up run on zeros (%s)", self.path.name, one_line(err))

    @staticmethod
    def _tensor(graph: Any, name: str, placeholders: List[str], path: Path) -> Any:
        try:
            return graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            raise ModelError(
                "frozen graph %s: expected a tensor %s, found none (its placeholders: %s)"
                % (path.name, short_name(name), ", ".join(placeholders) or "none")
            ) from None

    @staticmethod
    def _info(tensor: Any) -> TensorInfo:
        shape = tuple(tensor.shape.as_list()) if tensor.shape.rank is not None else ()
        return TensorInfo(short_name(tensor.name), shape, tensor.dtype.as_numpy_dtype)

    def run(self, inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run the graph once (any batch size and image size the graph accepts).

        Raises:
            ModelError: an input does not match the graph's placeholders, or inference fails.
        """
        feeds = check_feeds("frozen graph", self.inputs, inputs)
        feed_dict = {tensor: feeds[info.name] for tensor, info in zip(self._feeds, self.inputs)}
        try:
            values = self._session.run(self._fetches, feed_dict)
        except (ValueError, TypeError, self._tf.errors.OpError) as err:
            raise ModelError("frozen graph inference failed: %s" % one_line(err)) from err
        return {info.name: np.asarray(value) for info, value in zip(self.outputs, values)}

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
