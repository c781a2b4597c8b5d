"""Rewrite MediaPipe's custom TFLite op ``Convolution2DTransposeBias`` as the builtin ``TRANSPOSE_CONV``.

MediaPipe's selfie segmenter ends in a transposed convolution plus bias stored as that custom
op. TensorFlow 2.17's interpreter runs it (through its XNNPACK delegate); TensorFlow 2.13 (the
newest for Python 3.8: Noetic, JetPack 5) and ``tflite-runtime`` do not. The builtin
``TRANSPOSE_CONV`` (version 3, which takes a bias input) computes the same
``conv2d_transpose(input, weights) + bias``, so the rewritten model runs on every TFLite
runtime. The rewrite is done once, when the asset is fetched (:mod:`dl_vision.assets`).

The custom op's inputs are (input, weights OHWI, bias) and its options the C struct
``TfLiteTransposeConvParams``: padding (1 same, 2 valid), stride width, stride height, three
little-endian int32. ``TRANSPOSE_CONV`` takes (output shape, weights OHWI, input, bias), the
output shape as a constant int32 tensor, and its options as a table.
"""

from __future__ import annotations

import struct
from typing import Any, Tuple

import numpy as np

from dl_vision.errors import BackendUnavailableError, ModelError

CUSTOM_OP = b"Convolution2DTransposeBias"

#: TfLitePadding (the C enum in the custom options) -> the schema's Padding names.
_PADDING = {1: "SAME", 2: "VALID"}


def _schema() -> Tuple[Any, Any]:
    """TensorFlow's TFLite flatbuffer schema (object API) and its read/write helpers."""
    try:
        from tensorflow.lite.python import schema_py_generated
        from tensorflow.lite.tools import flatbuffer_utils
    except ImportError as err:
        raise BackendUnavailableError(
            "rewriting %s needs TensorFlow's TFLite schema: expected `pip install tensorflow`, found %s"
            % (CUSTOM_OP.decode(), err)
        ) from err
    return schema_py_generated, flatbuffer_utils


def rewrite_transpose_conv_bias(model: bytes) -> bytes:
    """A copy of a ``.tflite`` model with every ``Convolution2DTransposeBias`` as ``TRANSPOSE_CONV``.

    Args:
        model: the ``.tflite`` file's bytes.

    Returns:
        The rewritten model's bytes; every other op, tensor, buffer and the metadata are kept.

    Raises:
        BackendUnavailableError: TensorFlow (its flatbuffer schema) is not installed.
        ModelError: the bytes are not a TFLite model, hold no such op, or one has
            options other than the 12-byte padding/stride struct.
    """
    schema, flatbuffer_utils = _schema()
    try:
        tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    except Exception as err:  # flatbuffers raises whatever the first bad offset causes
        raise ModelError("expected a TFLite flatbuffer, found bytes that do not parse: %s" % err) from err
    custom = [i for i, code in enumerate(tree.operatorCodes or []) if code.customCode == CUSTOM_OP]
    if not custom:
        raise ModelError("expected a TFLite model using %s, found none" % CUSTOM_OP.decode())
    for index in custom:
        code = tree.operatorCodes[index]
        code.customCode = None
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.TRANSPOSE_CONV
        code.version = 3  # the version with the optional bias input
    for subgraph in tree.subgraphs:
        for op in subgraph.operators or []:
            if op.opcodeIndex in custom:
                _rewrite_operator(schema, tree, subgraph, op)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def _rewrite_operator(schema: Any, tree: Any, subgraph: Any, op: Any) -> None:
    """Turn one custom operator (object API, in place) into TRANSPOSE_CONV with a constant output shape."""
    options = bytes(bytearray(op.customOptions if op.customOptions is not None else []))
    if len(options) != 12 or len(op.inputs) != 3:
        raise ModelError(
            "%s: expected 3 inputs and 12 bytes of options, found %d inputs and %d bytes"
            % (CUSTOM_OP.decode(), len(op.inputs), len(options))
        )
    padding, stride_w, stride_h = struct.unpack("<iii", options)
    if padding not in _PADDING:
        raise ModelError("%s: expected padding 1 (same) or 2 (valid), found %d" % (CUSTOM_OP.decode(), padding))
    builtin_options = schema.TransposeConvOptionsT()
    builtin_options.padding = getattr(schema.Padding, _PADDING[padding])
    builtin_options.strideW, builtin_options.strideH = stride_w, stride_h
    op.builtinOptionsType = schema.BuiltinOptions.TransposeConvOptions
    op.builtinOptions = builtin_options
    op.customOptions = None

    output = subgraph.tensors[op.outputs[0]]
    shape = np.asarray(output.shape, dtype="<i4")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(shape.tobytes(), dtype=np.uint8)
    tree.buffers.append(buffer)
    shape_tensor = schema.TensorT()
    shape_tensor.shape = np.array([shape.size], dtype=np.int32)
    shape_tensor.type = schema.TensorType.INT32
    shape_tensor.buffer = len(tree.buffers) - 1
    shape_tensor.name = bytes(output.name or b"") + b"/output_shape"
    subgraph.tensors.append(shape_tensor)

    data, weights, bias = (int(i) for i in op.inputs)
    op.inputs = np.array([len(subgraph.tensors) - 1, weights, data, bias], dtype=np.int32)
