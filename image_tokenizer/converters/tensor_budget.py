"""Budgets before bytes: what a checkpoint's tensors may cost, decided from what the file declares (issue 37).

A tensor is a strided view of a storage. A view whose elements overlap (a stride of 0, rows that share values) or
reach beyond its storage costs nothing to load and its full size to materialise (isfinite, .float(), clone): four
bytes of storage can declare a terabyte. A zip entry declares its sizes before it is inflated, and a deflated one
can inflate a thousandfold. Both are checked here before any byte is read or any tensor materialised, for
TorchScript archives (torchscript.py) and torch.save checkpoints (common.load_pickled_checkpoint) alike.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import MAX_PARAMETERS
from ..errors import ConversionError

MAX_TENSOR_BYTES = MAX_PARAMETERS * 8  # all tensors of one file: the parameter limit in float64, or in float32 with
# the copies a training checkpoint adds (EMA weights, optimizer moments)
MAX_PICKLE_BYTES = 16 * 2**20  # a data.pkl describes tensors, it does not hold them: a few kB per hundred tensors
MAX_COMPRESSION_RATIO = 100  # deflated weights shrink little; zeros shrink 1000-fold (PyTorch never deflates)
SMALL_ENTRY = 2**20  # entries up to this size may inflate any amount
READ_CHUNK = 16 * 2**20


def quoted(name: Any, limit: int = 200) -> str:
    """repr of a name taken from a file, cut to `limit` characters: an error message stays one short line."""
    text = repr(name)
    return text if len(text) <= limit else text[:limit] + "..."


def _brief(values: Sequence[Any]) -> str:
    shown = ", ".join(quoted(v, 24) for v in list(values)[:8])
    return f"[{shown}{', ...' if len(values) > 8 else ''}]"


def check_view(where: Path, key: Any, size: Sequence[int], stride: Sequence[int], offset: int,
               storage_numel: int) -> int:
    """The number of elements of a view of a storage of `storage_numel` elements. A view that reaches beyond its
    storage, or whose elements overlap (a stride of 0 on a dimension longer than 1, rows sharing values), is a
    ConversionError naming the file and the tensor; tensors that share a storage without overlapping (tied
    weights, slices, transposes) are fine."""
    numbers = [*size, *stride, offset, storage_numel]
    if len(size) != len(stride) or not all(type(n) is int and n >= 0 for n in numbers):
        raise ConversionError(f"{where}: tensor {quoted(key)} has an invalid layout (shape {_brief(size)}, stride "
                              f"{_brief(stride)}, offset {quoted(offset, 40)})")
    numel = math.prod(size)
    if numel == 0:
        return 0
    reach = 0  # the largest index, relative to the offset, of the dimensions checked so far
    for length, step in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda dim: dim[1]):
        if step <= reach:
            raise ConversionError(
                f"{where}: tensor {quoted(key)} (shape {_brief(size)}, stride {_brief(stride)}) repeats elements of "
                f"its storage, which no saved weight does: its {numel:,} elements would be expanded from a storage of "
                f"{storage_numel:,}; refusing the file")
        reach += (length - 1) * step
    if offset + reach >= storage_numel:
        raise ConversionError(
            f"{where}: tensor {quoted(key)} (shape {_brief(size)}, stride {_brief(stride)}, offset {offset:,}) "
            f"reaches element {offset + reach:,} of a storage of {storage_numel:,}; the file is damaged or forged")
    return numel


def storage_end(size: Sequence[int], stride: Sequence[int], offset: int) -> int:
    """How many leading elements of its storage a view checked by check_view uses (0 for an empty view)."""
    if math.prod(size) == 0:
        return 0
    return offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1


def check_zip_entries(where: Path, archive: zipfile.ZipFile) -> None:
    """Before any entry is read: no name twice, only stored or deflated entries, none inflating more than
    MAX_COMPRESSION_RATIO times, each within the file, data.pkl under MAX_PICKLE_BYTES, all under MAX_TENSOR_BYTES."""
    names: set[str] = set()
    total, disk = 0, os.path.getsize(where)
    for info in archive.infolist():
        name = quoted(info.filename)
        if info.filename in names:
            raise ConversionError(f"{where}: the zip entry {name} appears twice; readers disagree about which copy "
                                  "counts (Python's zipfile takes the last, PyTorch the first), so the file is refused")
        names.add(info.filename)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ConversionError(f"{where}: the zip entry {name} uses compression method {info.compress_type}, which "
                                  "PyTorch never writes (it stores entries uncompressed)")
        stored_size_differs = info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
        if info.compress_size > disk or stored_size_differs:
            raise ConversionError(f"{where}: the zip entry {name} declares more bytes than the file holds; the file is "
                                  "truncated or forged")
        if info.file_size > max(SMALL_ENTRY, MAX_COMPRESSION_RATIO * info.compress_size):
            raise ConversionError(
                f"{where}: the zip entry {name} would inflate {info.compress_size:,} bytes to {info.file_size:,} "
                "(a zip bomb; PyTorch stores entries uncompressed); refusing to read it")
        if info.filename.endswith("data.pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise ConversionError(f"{where}: {name} declares {info.file_size:,} bytes, over the {MAX_PICKLE_BYTES:,} "
                                  "a description of tensors needs; refusing to read it")
        total += info.file_size
    if total > MAX_TENSOR_BYTES:
        raise ConversionError(f"{where}: its zip entries declare {total:,} bytes in all, over the {MAX_TENSOR_BYTES:,} "
                              f"that {MAX_PARAMETERS:,} parameters need")


def check_checkpoint_zip(path: Path) -> None:
    """check_zip_entries for a torch.save file in the zip format (what torch.load reads as one); files in the legacy
    format are left to torch.load."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":  # torch.load's own test for its zip format
                return
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None
    with archive:
        check_zip_entries(path, archive)


def read_entry(where: Path, archive: zipfile.ZipFile, name: str, nbytes: int) -> torch.Tensor:
    """The first `nbytes` bytes of a zip entry as a uint8 tensor, read in chunks (memory is touched as bytes arrive);
    an entry that ends early or is corrupt is a ConversionError."""
    buffer = torch.empty(nbytes, dtype=torch.uint8)
    view, done, count = memoryview(buffer.numpy()), 0, -1
    try:
        with archive.open(name) as entry:
            while done < nbytes and count:
                count = entry.readinto(view[done:done + READ_CHUNK])
                done += count
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, RuntimeError) as error:
        raise ConversionError(f"{where}: the zip entry {quoted(name)} cannot be read ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None
    if done < nbytes:
        raise ConversionError(f"{where}: the zip entry {quoted(name)} ends after {done:,} of {nbytes:,} bytes")
    return buffer


def read_small_entry(where: Path, archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A whole zip entry of at most `limit` bytes (read up to limit + 1, whatever its header declares)."""
    try:
        with archive.open(name) as entry:
            data = entry.read(limit + 1)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, RuntimeError) as error:
        raise ConversionError(f"{where}: the zip entry {quoted(name)} cannot be read ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None
    if len(data) > limit:
        raise ConversionError(f"{where}: the zip entry {quoted(name)} holds more than {limit:,} bytes; refusing it")
    return data


def check_loaded_tensors(where: Path, loaded: Any) -> None:
    """Every tensor in what torch.load(weights_only=True) returned (dicts, lists, tuples, allowlisted objects) lies
    inside its storage without overlapping, and all together fit MAX_TENSOR_BYTES. torch.load returns such views
    without expanding them, so this runs before anything can materialise one."""
    total, seen, pending = 0, set[int](), [("", loaded)]
    while pending:
        key, value = pending.pop()
        if isinstance(value, torch.Tensor):
            total += _tensor_bytes(where, key, value)
            if total > MAX_TENSOR_BYTES:
                raise ConversionError(f"{where}: its tensors declare over {MAX_TENSOR_BYTES:,} bytes in all (at "
                                      f"{quoted(key)}), more than {MAX_PARAMETERS:,} parameters need")
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            pending.extend((_child(key, k), v) for k, v in value.items())
        elif isinstance(value, (list, tuple, set, frozenset)):
            pending.extend((_child(key, i), v) for i, v in enumerate(value))
        elif hasattr(value, "__dict__") and not isinstance(value, type):  # argparse.Namespace and the like
            pending.extend((_child(key, k), v) for k, v in vars(value).items())


def _child(key: str, name: Any) -> str:
    """The dotted name of an entry (state_dict.encoder.conv_in.weight), cut short: nesting can be deep."""
    return (f"{key}.{name}" if key else str(name))[:300]


def _tensor_bytes(where: Path, key: str, tensor: torch.Tensor) -> int:
    if tensor.layout != torch.strided:
        raise ConversionError(f"{where}: tensor {quoted(key)} has layout {tensor.layout}; weights are dense tensors")
    itemsize = tensor.element_size()
    stored = tensor.untyped_storage().nbytes() // itemsize
    return check_view(where, key, tuple(tensor.shape), tensor.stride(), tensor.storage_offset(), stored) * itemsize
