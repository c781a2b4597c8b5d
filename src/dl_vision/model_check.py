"""Model files checked before a native runtime parses them.

TFLite's interpreter trusts its file: it maps the flatbuffer and follows its offsets without the
flatbuffers verifier, so a half-copied model (a full disk, an interrupted copy) kills the process
with a segmentation fault instead of raising. :func:`check_model_file` reads the file first and
turns such damage into one :class:`~dl_vision.errors.ModelError` line naming the file, what was
expected and what was found.

- ``tflite``: the file identifier ``TFL3``, then every table, vector and string the interpreter
  reads (model, operator codes, subgraphs, tensors, operators and their options, buffers,
  quantization, sparsity, metadata, signatures) lies inside the file, as the flatbuffers
  verifier checks, and the indices between them (tensor -> buffer, operator -> operator code and
  tensors, buffer offsets of models over 2 GB) point at things that exist; a sparse tensor's
  segments and indices, which the interpreter follows when it densifies the tensor, must fit its
  shape and its stored values (random bytes there made it write out of bounds). Python's flatbuffers
  package has no verifier, so the walk is written here from the TFLite schema (``schema.fbs``,
  version 3): 2 to 10 ms for the default models (the README's "Damaged files and errors").
- ``onnx``: protobuf parsing is safe, but a damaged file can still describe a graph that ONNX
  Runtime (and ``onnx.checker``'s shape inference) abort on, e.g. a Conv input of rank 2. The first
  load of each file therefore happens in a child process: the verdict is cached under
  ``$DL_VISION_CACHE/model_checks`` by the file's sha256 and the ONNX Runtime version, so later
  starts pay only the hash (0.1 s for 70 MB). A child that dies by a signal is a ModelError.
- ``frozen_graph``, ``saved_model``, ``keras``: their loaders parse protobuf/HDF5 with bounds
  checks and raise on damage; the check is only that the file (or SavedModel directory) is not
  empty.

Formats without an entry are left to their backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from dl_vision.errors import ModelError

_LOG = logging.getLogger("dl_vision")

#: Flatbuffers nesting the walk follows at most; TFLite's schema nests 5 deep (model, subgraph,
#: tensor, sparsity, dimension metadata), so anything deeper is a damaged offset.
MAX_DEPTH = 16

# Field kinds of the schema tables below: a scalar of N bytes, an offset to a string, a vector
# of N-byte scalars, a table, a vector of tables, or a union (its type is the previous slot).
_Field = Tuple[str, Union[int, str, None]]
_SCALAR, _STRING, _VECTOR, _TABLE, _TABLES, _UNION = "scalar", "string", "vector", "table", "tables", "union"

#: The TFLite schema (tensorflow/lite/schema/schema.fbs) as ``{table: {slot: (kind, detail)}}``,
#: slot = field id. Only fields whose layout matters for bounds are listed; unknown slots of a
#: table are checked to lie inside the table.
_SCHEMA: Dict[str, Dict[int, _Field]] = {
    "Model": {
        0: (_SCALAR, 4),  # version
        1: (_TABLES, "OperatorCode"),
        2: (_TABLES, "SubGraph"),
        3: (_STRING, None),  # description
        4: (_TABLES, "Buffer"),
        5: (_VECTOR, 4),  # metadata_buffer
        6: (_TABLES, "Metadata"),
        7: (_TABLES, "SignatureDef"),
    },
    "OperatorCode": {0: (_SCALAR, 1), 1: (_STRING, None), 2: (_SCALAR, 4), 3: (_SCALAR, 4)},
    "SubGraph": {
        0: (_TABLES, "Tensor"),
        1: (_VECTOR, 4),  # inputs
        2: (_VECTOR, 4),  # outputs
        3: (_TABLES, "Operator"),
        4: (_STRING, None),  # name
    },
    "Tensor": {
        0: (_VECTOR, 4),  # shape
        1: (_SCALAR, 1),  # type
        2: (_SCALAR, 4),  # buffer
        3: (_STRING, None),  # name
        4: (_TABLE, "QuantizationParameters"),
        5: (_SCALAR, 1),  # is_variable
        6: (_TABLE, "SparsityParameters"),
        7: (_VECTOR, 4),  # shape_signature
        8: (_SCALAR, 1),  # has_rank
        9: (_TABLES, "VariantSubType"),
    },
    "VariantSubType": {0: (_VECTOR, 4), 1: (_SCALAR, 1), 2: (_SCALAR, 1)},
    "QuantizationParameters": {
        0: (_VECTOR, 4),  # min
        1: (_VECTOR, 4),  # max
        2: (_VECTOR, 4),  # scale
        3: (_VECTOR, 8),  # zero_point
        4: (_SCALAR, 1),  # details_type
        5: (_UNION, "QuantizationDetails"),
        6: (_SCALAR, 4),  # quantized_dimension
    },
    "CustomQuantization": {0: (_VECTOR, 1)},
    "SparsityParameters": {0: (_VECTOR, 4), 1: (_VECTOR, 4), 2: (_TABLES, "DimensionMetadata")},
    "DimensionMetadata": {
        0: (_SCALAR, 1),  # format
        1: (_SCALAR, 4),  # dense_size
        2: (_SCALAR, 1),  # array_segments_type
        3: (_UNION, "SparseIndexVector"),
        4: (_SCALAR, 1),  # array_indices_type
        5: (_UNION, "SparseIndexVector"),
    },
    "Int32Vector": {0: (_VECTOR, 4)},
    "Uint16Vector": {0: (_VECTOR, 2)},
    "Uint8Vector": {0: (_VECTOR, 1)},
    "Operator": {
        0: (_SCALAR, 4),  # opcode_index
        1: (_VECTOR, 4),  # inputs
        2: (_VECTOR, 4),  # outputs
        3: (_SCALAR, 1),  # builtin_options_type
        4: (_UNION, "BuiltinOptions"),
        5: (_VECTOR, 1),  # custom_options
        6: (_SCALAR, 1),  # custom_options_format
        7: (_VECTOR, 1),  # mutating_variable_inputs
        8: (_VECTOR, 4),  # intermediates
        9: (_SCALAR, 8),  # large_custom_options_offset
        10: (_SCALAR, 8),  # large_custom_options_size
        11: (_SCALAR, 1),  # builtin_options_2_type
        12: (_UNION, "BuiltinOptions2"),
    },
    "Buffer": {0: (_VECTOR, 1), 1: (_SCALAR, 8), 2: (_SCALAR, 8)},  # data, offset, size
    "Metadata": {0: (_STRING, None), 1: (_SCALAR, 4)},
    "SignatureDef": {0: (_TABLES, "TensorMap"), 1: (_TABLES, "TensorMap"), 2: (_STRING, None), 4: (_SCALAR, 4)},
    "TensorMap": {0: (_STRING, None), 1: (_SCALAR, 4)},
    # Builtin options that hold vectors or strings; every other option table holds scalars only.
    "ConcatEmbeddingsOptions": {0: (_SCALAR, 4), 1: (_VECTOR, 4), 2: (_VECTOR, 4)},
    "ReshapeOptions": {0: (_VECTOR, 4)},
    "SqueezeOptions": {0: (_VECTOR, 4)},
    "VarHandleOptions": {0: (_STRING, None), 1: (_STRING, None)},
    "BucketizeOptions": {0: (_VECTOR, 4)},
    "ScalarOptions": {},
}

#: ``{union: {type id: table}}``; a type id not listed is checked as a table of scalars.
_UNIONS: Dict[str, Dict[int, str]] = {
    "QuantizationDetails": {1: "CustomQuantization"},
    "SparseIndexVector": {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"},
    "BuiltinOptions": {
        3: "ConcatEmbeddingsOptions",
        17: "ReshapeOptions",
        30: "SqueezeOptions",
        111: "VarHandleOptions",
        115: "BucketizeOptions",
    },
    "BuiltinOptions2": {},
}


class _Damaged(Exception):
    """Where the flatbuffer walk found something outside the file (internal to the walk)."""


_I32, _U32 = struct.Struct("<i"), struct.Struct("<I")
_SCALARS = {1: "<B", 4: "<I", 8: "<Q"}


class _FlatBuffer:
    """Bounds-checked reads of one flatbuffer, and the walk over the TFLite schema."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def _u32(self, pos: int, what: str) -> int:
        if pos < 0 or pos + 4 > self.size:
            raise _Damaged("%s at byte %d, beyond the end of the file" % (what, pos))
        return _U32.unpack_from(self.data, pos)[0]

    def fields(self, pos: int, path: str) -> Tuple[Dict[int, int], int]:
        """``({slot: field position}, table size)`` of the table at ``pos``, its vtable checked."""
        if pos < 0 or pos + 4 > self.size:
            raise _Damaged("%s: a table at byte %d, beyond the end of the file" % (path, pos))
        vtable = pos - _I32.unpack_from(self.data, pos)[0]
        if vtable < 0 or vtable + 4 > self.size:
            raise _Damaged("%s: a vtable at byte %d, beyond the end of the file" % (path, vtable))
        vtable_size, table_size = struct.unpack_from("<HH", self.data, vtable)
        if vtable_size < 4 or vtable_size % 2 or vtable + vtable_size > self.size or pos + table_size > self.size:
            raise _Damaged(
                "%s: a table of %d bytes at byte %d with a vtable of %d bytes at byte %d, not inside the file"
                % (path, table_size, pos, vtable_size, vtable)
            )
        offsets = struct.unpack_from("<%dH" % ((vtable_size - 4) // 2), self.data, vtable + 4)
        return {slot: pos + offset for slot, offset in enumerate(offsets) if offset}, pos + table_size

    def verify(self, pos: int, name: str, depth: int, path: str, skip: Tuple[int, ...] = ()) -> Dict[int, int]:
        """Check the table at ``pos`` and, recursively, what its fields point to; its fields.

        ``skip``: slots whose vectors of tables the caller walks itself (their offsets are checked here).
        """
        if depth > MAX_DEPTH:
            raise _Damaged("%s nested deeper than %d tables" % (path, MAX_DEPTH))
        fields, end = self.fields(pos, path)
        schema = _SCHEMA.get(name, {})
        for slot, field in fields.items():
            kind, detail = schema.get(slot, (_SCALAR, 1))
            if field + (int(detail) if kind == _SCALAR else 4) > end:
                raise _Damaged("%s field %d: outside its table (byte %d)" % (path, slot, field))
            if slot in skip:
                continue
            if kind == _STRING:
                self.vector(field, 1, path, terminated=True)
            elif kind == _VECTOR:
                self.vector(field, int(detail), path)
            elif kind == _TABLE:
                self.verify(self.follow(field, path), str(detail), depth + 1, path + "." + str(detail))
            elif kind == _TABLES:
                for element in self.tables(field, path):
                    self.verify(element, str(detail), depth + 1, path + "." + str(detail))
            elif kind == _UNION and slot - 1 in fields:
                union_type = self.data[fields[slot - 1]]
                if union_type:
                    member = _UNIONS[str(detail)].get(union_type, "")
                    self.verify(self.follow(field, path), member, depth + 1, "%s.%s(%d)" % (path, detail, union_type))
        return fields

    def follow(self, pos: int, path: str) -> int:
        """The position an unsigned offset at ``pos`` points to."""
        return pos + self._u32(pos, path + ": an offset")

    def vector(self, pos: int, width: int, path: str, terminated: bool = False) -> Tuple[int, int]:
        """``(position of the first element, length)`` of the vector an offset at ``pos`` points to."""
        start = self.follow(pos, path)
        length = self._u32(start, path + ": a vector")
        end = start + 4 + length * width + (1 if terminated else 0)
        if end > self.size:
            raise _Damaged(
                "%s: a %s of %d elements ending at byte %d, beyond the end of the file"
                % (path, "string" if terminated else "vector", length, end)
            )
        return start + 4, length

    def tables(self, pos: int, path: str) -> List[int]:
        """Positions of the tables of the vector of tables an offset at ``pos`` points to."""
        first, length = self.vector(pos, 4, path)
        return [
            first + 4 * i + offset for i, offset in enumerate(struct.unpack_from("<%dI" % length, self.data, first))
        ]

    def ints(self, fields: Dict[int, int], slot: int) -> List[int]:
        """The int32 vector in ``slot`` of a verified table (empty when absent)."""
        if slot not in fields:
            return []
        first, length = self.vector(fields[slot], 4, "")
        return list(struct.unpack_from("<%di" % length, self.data, first))

    def scalar(self, fields: Dict[int, int], slot: int, width: int) -> int:
        """The unsigned scalar in ``slot`` of a verified table (0 when absent)."""
        return struct.unpack_from(_SCALARS[width], self.data, fields[slot])[0] if slot in fields else 0


def check_tflite(path: Path) -> None:
    """Check a ``.tflite`` flatbuffer's structure and cross-references (see the module docstring).

    Raises:
        ModelError: naming the file, what was expected and what was found.
    """
    data = _read_file(path, "TFLite model")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(
            "%s: expected a TFLite flatbuffer (file identifier TFL3 at byte 4), found %s"
            % (path, "%d bytes" % len(data) if len(data) < 8 else "%r" % bytes(data[4:8]))
        )
    buffer = _FlatBuffer(data)
    try:
        _check_model(buffer)
    except _Damaged as err:
        raise ModelError(
            "%s: expected a complete TFLite flatbuffer, found %s (the file has %d bytes): it is truncated or "
            "damaged, copy it again" % (path, err, len(data))
        ) from None


def _check_model(buffer: _FlatBuffer) -> None:
    """One walk: the structure of every table, and the indices between them."""
    model = buffer.verify(buffer.follow(0, "root"), "Model", 0, "model", skip=(2, 4))
    codes = len(buffer.tables(model[1], "model.operator_codes")) if 1 in model else 0
    buffers = buffer.tables(model[4], "model.buffers") if 4 in model else []
    for index, position in enumerate(buffers):
        fields = buffer.verify(position, "Buffer", 1, "model.buffer")
        offset, size = buffer.scalar(fields, 1, 8), buffer.scalar(fields, 2, 8)
        if offset > 1 and offset + size > buffer.size:  # offset 1 marks "no data" in the schema
            raise _Damaged("buffer %d: %d bytes of data at byte %d" % (index, size, offset))
    subgraphs = buffer.tables(model[2], "model.subgraphs") if 2 in model else []
    if not subgraphs:
        raise _Damaged("a model without subgraphs")
    for s, position in enumerate(subgraphs):
        sub = buffer.verify(position, "SubGraph", 1, "model.subgraph", skip=(0, 3))
        tensors = buffer.tables(sub[0], "model.subgraph.tensors") if 0 in sub else []
        for t, tensor_position in enumerate(tensors):
            tensor = buffer.verify(tensor_position, "Tensor", 2, "model.subgraph.tensor")
            used = buffer.scalar(tensor, 2, 4)
            if used >= max(len(buffers), 1):
                raise _Damaged("subgraph %d tensor %d naming buffer %d of %d" % (s, t, used, len(buffers)))
            if 6 in tensor:  # sparse: TFLite densifies it at allocation, trusting every index
                data = buffer.fields(buffers[used], "")[0] if buffers else {}
                stored = buffer.vector(data[0], 1, "")[1] if 0 in data else 0
                _check_sparsity(buffer, tensor, stored, "subgraph %d tensor %d" % (s, t))
        for what, slot in (("inputs", 1), ("outputs", 2)):
            _check_indices(buffer.ints(sub, slot), len(tensors), "subgraph %d %s" % (s, what))
        operators = buffer.tables(sub[3], "model.subgraph.operators") if 3 in sub else []
        for o, operator_position in enumerate(operators):
            op = buffer.verify(operator_position, "Operator", 2, "model.subgraph.operator")
            if buffer.scalar(op, 0, 4) >= codes:
                raise _Damaged(
                    "subgraph %d operator %d naming operator code %d of %d" % (s, o, buffer.scalar(op, 0, 4), codes)
                )
            for what, slot in (("inputs", 1), ("outputs", 2), ("intermediates", 8)):
                _check_indices(buffer.ints(op, slot), len(tensors), "subgraph %d operator %d %s" % (s, o, what))


#: Bytes per element of the TFLite tensor types a sparse tensor may hold (schema ``TensorType``).
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 12: 8, 15: 4, 16: 2, 18: 2}
_UNION_TYPES = {1: np.dtype("<i4"), 2: np.dtype("<u2"), 3: np.dtype("u1")}  # Int32Vector, Uint16Vector, Uint8Vector


def _check_sparsity(buffer: _FlatBuffer, tensor: Dict[int, int], stored: int, where: str) -> None:
    """A sparse tensor's levels must describe exactly its stored values, with indices inside its shape.

    ``stored``: bytes in the tensor's buffer. Level by level (traversal order): a dense level
    multiplies the entries by its size; a CSR level needs one more segment than the entries above
    it, non-decreasing from 0 to its index count, and indices below the size of its dimension.
    """
    shape = buffer.ints(tensor, 0)
    sparsity = buffer.fields(buffer.follow(tensor[6], ""), "")[0]
    order, block_map = buffer.ints(sparsity, 0), buffer.ints(sparsity, 1)
    levels = [buffer.fields(p, "")[0] for p in buffer.tables(sparsity[2], "")] if 2 in sparsity else []
    if (
        len(order) != len(levels)
        or sorted(order) != list(range(len(order)))
        or len(shape) + len(block_map) != len(order)
    ):
        raise _Damaged(
            "%s: sparsity with traversal order %s for %d levels and shape %s" % (where, order, len(levels), shape)
        )
    if any(not 0 <= d < len(shape) for d in block_map):
        raise _Damaged("%s: sparsity blocking dimensions %s of shape %s" % (where, block_map, shape))
    sizes = {}  # traversal dimension -> its size: the shape's (divided by its block), or the block's
    for level, dim in zip(levels, order):
        sizes[dim] = buffer.scalar(level, 1, 4) if dim >= len(shape) else None
    for block, dim in enumerate(block_map):
        sizes[dim] = shape[dim] // max(sizes[len(shape) + block] or 1, 1)
    entries = 1
    for level, dim in zip(levels, order):
        size = sizes[dim] if sizes[dim] is not None else shape[dim]
        if not buffer.scalar(level, 0, 1):  # DENSE
            entries *= buffer.scalar(level, 1, 4)
            continue
        segments, indices = (_index_vector(buffer, level, slot) for slot in (3, 5))
        if (
            len(segments) != entries + 1
            or segments[0] != 0
            or segments[-1] != len(indices)
            or np.any(np.diff(segments) < 0)
            or (len(indices) and not 0 <= int(indices.min()) <= int(indices.max()) < size)
        ):
            raise _Damaged(
                "%s: sparse level of dimension %d whose segments or indices do not fit its size %d" % (where, dim, size)
            )
        entries = len(indices)
    element = _TYPE_BYTES.get(buffer.scalar(tensor, 1, 1))
    if element is not None and stored != entries * element:
        raise _Damaged("%s: %d bytes of sparse values where its indices need %d" % (where, stored, entries * element))


def _index_vector(buffer: _FlatBuffer, level: Dict[int, int], slot: int) -> np.ndarray:
    """The values of a dimension's ``array_segments`` (slot 3) or ``array_indices`` (slot 5) union, as int64."""
    kind = buffer.scalar(level, slot - 1, 1)
    vector = buffer.fields(buffer.follow(level[slot], ""), "")[0] if kind in _UNION_TYPES and slot in level else {}
    if 0 not in vector:
        raise _Damaged("a sparse dimension without its %s" % ("segments" if slot == 3 else "indices"))
    dtype = _UNION_TYPES[kind]
    first, length = buffer.vector(vector[0], dtype.itemsize, "")
    return np.frombuffer(buffer.data, dtype, length, first).astype(np.int64)


def _check_indices(indices: List[int], count: int, what: str) -> None:
    for index in indices:
        if not -1 <= index < count:  # -1 marks an optional input left out
            raise _Damaged("%s naming tensor %d of %d" % (what, index, count))


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ModelError("%s %s: cannot be read (%s)" % (what, path, err.strerror or err)) from err


#: Seconds a first load in a child process may take before the check gives up (and lets the load run).
CHILD_TIMEOUT_S = 300.0

# Runs in the child: load the model with its backend (no check: that is this) and run it once on zeros.
_CHILD_LOAD = r"""
import sys
from pathlib import Path
import numpy as np
from dl_vision.backends import BACKENDS
from dl_vision.errors import DlVisionError
try:
    backend = BACKENDS.create(sys.argv[1], {"providers": ["cpu"]}, path=Path(sys.argv[2]))
    backend.run({i.name: np.zeros([d or 1 for d in i.shape], i.dtype) for i in backend.inputs})
except DlVisionError:
    pass  # the load in the parent raises the same error, with its own line
"""


def check_onnx(path: Path) -> None:
    """Load an ONNX model once in a child process (verdict cached by sha256); a crash is a ModelError.

    Raises:
        ModelError: the file is empty, or loading it killed the child process.
    """
    _check_not_empty(path)
    try:
        from importlib import metadata

        runtime = "onnxruntime-%s" % metadata.version("onnxruntime")
    except Exception:  # noqa: BLE001 - not installed (or no metadata): the backend reports that itself
        return
    digest = hashlib.sha256(_read_file(path, "ONNX model")).hexdigest()
    from dl_vision.assets import cache_dir

    verdict_file = cache_dir() / "model_checks" / ("%s-%s.json" % (digest, runtime))
    verdict = _cached(verdict_file)
    if verdict is None:
        verdict = _load_in_child("onnx", path)
        if verdict is None:
            return
        try:
            verdict_file.parent.mkdir(parents=True, exist_ok=True)
            verdict_file.write_text(json.dumps({"file": str(path), "verdict": verdict}))
        except OSError as err:  # a read-only cache: check again next time
            _LOG.info("model check verdict not cached (%s)", err)
    if verdict != "ok":
        raise ModelError(
            "%s: expected an ONNX model %s loads, found one that crashes it (%s): the file is damaged "
            "or not a model for this runtime; copy it again or export it again" % (path, runtime, verdict)
        )


def _cached(verdict_file: Path) -> Optional[str]:
    try:
        return str(json.loads(verdict_file.read_text())["verdict"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_in_child(fmt: str, path: Path) -> Optional[str]:
    """``"ok"``, or how the child died; None when it ran out of time (no verdict)."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD_LOAD, fmt, str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # the runtime's own dying words (an assertion) say less than the signal
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        _LOG.warning("%s: a first load in a child process took over %d s; not checked", path, CHILD_TIMEOUT_S)
        return None
    if result.returncode >= 0:
        return "ok"  # a clean exit: loaded, or an error the parent's load reports itself
    try:
        name = signal.Signals(-result.returncode).name
    except ValueError:
        name = "signal %d" % -result.returncode
    return "%s in a test load" % name


def _check_not_empty(path: Path) -> None:
    """Protobuf and HDF5 loaders raise on damage; an empty file or directory gets a clearer line here."""
    if os.path.isdir(path):
        if not any(path.iterdir()):
            raise ModelError("%s: expected a model directory, found an empty directory" % path)
    elif path.stat().st_size == 0:
        raise ModelError("%s: expected a model file, found an empty file" % path)


#: ``format -> check``: the formats whose files are checked before loading.
CHECKS: Dict[str, Callable[[Path], None]] = {
    "tflite": check_tflite,
    "onnx": check_onnx,
    "frozen_graph": _check_not_empty,
    "saved_model": _check_not_empty,
    "keras": _check_not_empty,
}


def check_model_file(fmt: str, path: Union[str, Path]) -> Optional[str]:
    """Check a model file before its runtime parses it.

    Args:
        fmt: the spec's format (``tflite``, ``onnx``, ...).
        path: the model file or directory.

    Returns:
        The name of the check that ran, or None when the format has none.

    Raises:
        ModelError: the file is missing or damaged; one line naming the file, what was expected
            and what was found.
    """
    path = Path(path)
    if not os.path.exists(path):  # os.path: False, not OSError, for a name too long
        raise ModelError("model file %s does not exist" % path)
    check = CHECKS.get(fmt)
    if check is None:
        return None
    check(path)
    return check.__name__.lstrip("_")
