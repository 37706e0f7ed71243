"""Tensors of a TorchScript archive (`torch.jit.save`), read without running any of its code.

A TorchScript file is a zip: `data.pkl` pickles the module tree (objects of classes named `__torch__.*`, whose
TorchScript code sits beside it in `code/` and is never executed here), and `data/N` holds the raw bytes of each
tensor storage. The restricted unpickler below admits only plain data: module classes become inert records of
their attributes, tensors are rebuilt from their storage bytes with `torch.as_strided`, and any other global is
refused, naming the file and the global.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConversionError

STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class ScriptedModule:
    """An inert record of one module of the archive: its TorchScript class name and its attributes."""

    class_name = ""


@dataclass
class ScriptedTree:
    """What an archive holds: tensors by dotted name, and the class name of each module path ('' is the root)."""

    tensors: dict[str, torch.Tensor]
    classes: dict[str, str]


def read_torchscript(path: Path) -> ScriptedTree:
    """The tensors and module classes of a TorchScript archive; anything else in it is a ConversionError."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise ConversionError(f"{path}: not a TorchScript archive (not a zip file: {error})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1 or f"{pickles[0][:-len('data.pkl')]}constants.pkl" not in archive.namelist():
            raise ConversionError(f"{path}: not a TorchScript archive (no data.pkl with constants.pkl beside it)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(f"{prefix}byteorder").decode() if f"{prefix}byteorder" in archive.namelist() else "little"
        if byteorder != "little":
            raise ConversionError(f"{path}: stored {byteorder}-endian; only little-endian archives are read")
        try:
            root = _ArchiveUnpickler(archive, prefix, path).load()
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, RuntimeError) as error:
            raise ConversionError(f"{path}: unreadable TorchScript data.pkl ({type(error).__name__}: {error})") from None
    if not isinstance(root, ScriptedModule):
        raise ConversionError(f"{path}: the archive's data.pkl holds no TorchScript module")
    tree = ScriptedTree({}, {})
    _walk(root, "", tree)
    return tree


def _walk(module: ScriptedModule, prefix: str, tree: ScriptedTree) -> None:
    tree.classes[prefix.rstrip(".")] = module.class_name
    for name, value in vars(module).items():
        if isinstance(value, torch.Tensor):
            tree.tensors[prefix + name] = value
        elif isinstance(value, ScriptedModule):
            _walk(value, f"{prefix}{name}.", tree)


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(archive.open(f"{prefix}data.pkl"))
        self.archive, self.prefix, self.path = archive, prefix, path
        self.record_classes: dict[str, type] = {}

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
        raise pickle.UnpicklingError(f"refusing the global {module}.{name}, which is not plain data")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        """('storage', dtype, key, location, numel) -> a flat tensor over the bytes of data/KEY."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _, numel = pid
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() < numel:
            raise pickle.UnpicklingError(f"storage {key} holds {flat.numel()} values, {numel} expected")
        return flat


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2 for a flat storage tensor: a copy of the strided view it describes."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor without a storage")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset)).clone()
