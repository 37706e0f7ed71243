"""Tensors of a TorchScript archive (`torch.jit.save`), read without running any of its code.

A TorchScript file is a zip: `data.pkl` pickles the module tree (objects of classes named `__torch__.*`, whose
TorchScript code sits beside it in `code/` and is never executed here), and `data/N` holds the raw bytes of each
tensor storage. The restricted unpickler below admits only plain data: module classes become inert records of
their attributes, tensors are first records of their layout, and any other global is refused, naming the file and
the global. Every layout is checked against its storage and the budgets of tensor_budget.py before any storage is
read; then only the bytes the tensors use are read, in chunks, and the tensors are views of them.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import MAX_PARAMETERS
from ..errors import ConversionError
from .lightning import notice
from .tensor_budget import (
    MAX_PICKLE_BYTES,
    MAX_TENSOR_BYTES,
    check_view,
    check_zip_entries,
    quoted,
    read_entry,
    read_small_entry,
    storage_end,
)

STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
MAX_MODULE_DEPTH = 100  # published models nest modules a handful of levels deep
MAX_NAMES = 100_000  # module paths and tensor names in all, far above any published model's
MAX_NAME_LENGTH = 1000  # characters of a dotted name (encoder.down.0.block.1.conv1.weight)
NOT_READ = ("code/", "constants.pkl", "traced_inputs.pkl")  # what the archive runs or feeds its code, never read


class ScriptedModule:
    """An inert record of one module of the archive: its TorchScript class name and its attributes."""

    class_name = ""


@dataclass
class ScriptedTree:
    """What an archive holds: tensors by dotted name, and the class name of each module path ('' is the root)."""

    tensors: dict[str, torch.Tensor]
    classes: dict[str, str]


@dataclass(frozen=True)
class _Storage:
    """A storage as data.pkl declares it: the entry data/KEY holding `numel` values of `dtype`."""

    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class _Layout:
    """A tensor as data.pkl declares it, before any byte of its storage is read."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def read_torchscript(path: Path) -> ScriptedTree:
    """The tensors and module classes of a TorchScript archive; anything else in it is a ConversionError."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise ConversionError(f"{path}: not a TorchScript archive (not a zip file: {error})") from None
    with archive:
        check_zip_entries(path, archive)
        prefix = _prefix(path, archive)
        _check_byteorder(path, archive, prefix)
        data = read_small_entry(path, archive, f"{prefix}data.pkl", MAX_PICKLE_BYTES)
        try:
            root = _ArchiveUnpickler(io.BytesIO(data), path).load()
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, RuntimeError) as error:
            raise ConversionError(f"{path}: unreadable TorchScript data.pkl ({type(error).__name__}: "
                                  f"{str(error)[:300]})") from None
        if not isinstance(root, ScriptedModule):
            raise ConversionError(f"{path}: the archive's data.pkl holds no TorchScript module")
        layouts: dict[str, _Layout] = {}
        classes: dict[str, str] = {}
        _walk(path, root, "", (), layouts, classes)
        tensors = _materialise(path, archive, prefix, layouts)
        ignored = [name for name in NOT_READ if any(entry.startswith(prefix + name) for entry in archive.namelist())]
    if ignored:
        notice(f"{path.name}: only its tensors were read; its TorchScript {', '.join(ignored)} were neither read "
               "nor run")
    return ScriptedTree(tensors, classes)


def _prefix(path: Path, archive: zipfile.ZipFile) -> str:
    """The archive's top folder ('encoder/'), which holds data.pkl beside constants.pkl."""
    names = set(archive.namelist())
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1 or f"{pickles[0][:-len('data.pkl')]}constants.pkl" not in names:
        raise ConversionError(f"{path}: not a TorchScript archive (no data.pkl with constants.pkl beside it)")
    return pickles[0][: -len("data.pkl")]


def _check_byteorder(path: Path, archive: zipfile.ZipFile, prefix: str) -> None:
    if f"{prefix}byteorder" not in archive.namelist():
        return  # archives written before the record existed are little-endian
    byteorder = read_small_entry(path, archive, f"{prefix}byteorder", 16)
    if byteorder != b"little":
        raise ConversionError(f"{path}: its byteorder record is {quoted(byteorder, 40)}; only little-endian archives "
                              "(b'little') are read")


def _walk(path: Path, module: ScriptedModule, prefix: str, above: tuple[int, ...], layouts: dict[str, _Layout],
          classes: dict[str, str]) -> None:
    """Record the tensor layouts and class names under `module`, refusing cycles, deep nesting, odd or long names,
    and more names than MAX_NAMES (a module shared by many parents counts once per path)."""
    where = quoted(prefix.rstrip(".") or "the root module")
    if len(above) > MAX_MODULE_DEPTH:
        raise ConversionError(f"{path}: modules nested deeper than {MAX_MODULE_DEPTH} levels (at {where})")
    classes[prefix.rstrip(".")] = type(module).class_name  # the class's, which no pickled state can replace
    for name, value in vars(module).items():
        if not isinstance(name, str):
            raise ConversionError(f"{path}: module {where} has attribute name {quoted(name, 60)}, which is not a "
                                  "string")
        if len(prefix) + len(name) > MAX_NAME_LENGTH or len(classes) + len(layouts) >= MAX_NAMES:
            raise ConversionError(f"{path}: module {where} holds names over {MAX_NAME_LENGTH} characters or more "
                                  f"than {MAX_NAMES:,} modules and tensors in all; refusing the archive")
        if isinstance(value, _Layout):
            layouts[prefix + name] = value
        elif isinstance(value, ScriptedModule):
            if value is module or id(value) in above:
                raise ConversionError(f"{path}: module {quoted(prefix + name)} contains itself")
            _walk(path, value, f"{prefix}{name}.", (*above, id(module)), layouts, classes)


def _materialise(path: Path, archive: zipfile.ZipFile, prefix: str,
                 layouts: dict[str, _Layout]) -> dict[str, torch.Tensor]:
    """The tensors, once every layout fits its storage and the budgets: each storage is read only as far as its
    tensors reach, and each tensor is a view of it."""
    values, needed = 0, {}
    for name, layout in layouts.items():
        values += check_view(path, name, layout.size, layout.stride, layout.offset, layout.storage.numel)
        end = storage_end(layout.size, layout.stride, layout.offset)
        needed[layout.storage] = max(needed.get(layout.storage, 0), end)
    if values > MAX_PARAMETERS:
        raise ConversionError(f"{path}: its tensors declare {values:,} values in all, over the limit of "
                              f"{MAX_PARAMETERS:,}")
    to_read = sum(count * storage.dtype.itemsize for storage, count in needed.items())
    if to_read > MAX_TENSOR_BYTES:
        raise ConversionError(f"{path}: its tensors span {to_read:,} bytes of storage, over {MAX_TENSOR_BYTES:,}")
    flat = {}
    for storage, count in needed.items():
        entry = f"{prefix}data/{storage.key}"
        declared = storage.numel * storage.dtype.itemsize
        try:
            size = archive.getinfo(entry).file_size
        except KeyError:
            raise ConversionError(f"{path}: data.pkl names the storage {quoted(entry)}, which the archive "
                                  "lacks") from None
        if size != declared:
            raise ConversionError(f"{path}: the storage {quoted(entry)} holds {size:,} bytes where data.pkl declares "
                                  f"{declared:,}")
        flat[storage] = read_entry(path, archive, entry, count * storage.dtype.itemsize).view(storage.dtype)
    return {name: torch.as_strided(flat[layout.storage], layout.size, layout.stride, layout.offset)
            for name, layout in layouts.items()}


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: io.BytesIO, path: Path):
        super().__init__(data)
        self.path = path
        self.record_classes: dict[str, type] = {}
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):  # a scripted module's class: an inert record, its code is not loaded
            qualified = f"{module}.{name}"
            if qualified not in self.record_classes:
                self.record_classes[qualified] = type(name, (ScriptedModule,), {"class_name": qualified})
            return self.record_classes[qualified]
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing the global {module[:100]}.{name[:100]}, which is not plain data")

    def persistent_load(self, pid: Any) -> _Storage:
        """('storage', dtype, key, location, numel) -> the storage's record (one per key)."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)
                and isinstance(pid[2], str) and len(pid[2]) < 100 and type(pid[4]) is int and pid[4] >= 0):
            raise pickle.UnpicklingError(f"unexpected persistent id {quoted(pid)}")
        storage = _Storage(pid[2], pid[1], pid[4])
        if self.storages.setdefault(storage.key, storage) != storage:
            raise pickle.UnpicklingError(f"the storage {quoted(storage.key)} is declared twice, differently")
        return storage


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _Layout:
    """torch._utils._rebuild_tensor_v2, deferred: the layout it describes, checked and read after unpickling."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple)):
        raise pickle.UnpicklingError("a tensor whose size or stride is not a tuple")
    return _Layout(storage, offset, size, stride)
