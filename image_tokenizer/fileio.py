"""Atomic file writes and strict safetensors reads: a crash mid-write never leaves a half-written file."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import textfiles
from .errors import CheckpointError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should carry the usual permissions
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: str | Path, keep_other_files: bool = False, last: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target` to write into; on success its files take `target`'s place,
    on failure it is removed and `target` is left as it was. A missing `target` appears in one rename; an existing
    one is replaced whole, or with keep_other_files keeps its other files and has only the names written replaced,
    one rename each (`last` moved last: the file that marks the folder complete). A rename replaces a symlink of
    the same name, never the file it points to."""
    target = Path(os.path.abspath(target))
    merge = keep_other_files and target.is_dir()
    place = target.resolve() if merge else target  # beside the real folder: a rename never crosses file systems
    tmp = place.with_name(f".{place.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if merge:
            for name in sorted((p.name for p in tmp.iterdir()), key=lambda name: name == last):
                os.replace(tmp / name, target / name)
        else:
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (contiguous CPU copies, so views and GPU tensors are fine)."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never pickle), turning a missing or corrupt file into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a safetensors file, from its header alone: what the file holds, before reading it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None


def read_json_object(path: str | Path, what: str) -> dict:
    """A JSON object from a saved `what` (tokenizer, prior, ...) folder's file: textfiles.read_json_object, with a
    missing file named as the part of the folder it is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a saved {what} directory needs {path.name}")
    return textfiles.read_json_object(path, CheckpointError)


def check_state_dict(
    path: str | Path, loaded: Mapping[str, torch.Tensor | tuple[int, ...]], expected: dict[str, torch.Tensor]
) -> None:
    """Strict key/shape comparison with an error naming the file and the offending keys. `loaded` holds tensors
    or, read from a header before any tensor is (tensor_shapes), their shapes."""
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    shape = lambda value: tuple(getattr(value, "shape", value))
    mis_shaped = [
        f"{k}: file {shape(loaded[k])} vs model {shape(expected[k])}"
        for k in sorted(set(loaded) & set(expected))
        if shape(loaded[k]) != shape(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    if mis_shaped:
        problems.append(f"mis-shaped tensors {_short(mis_shaped)}")
    if problems:
        raise CheckpointError(f"{path} does not match the model of this config: " + "; ".join(problems))


def _short(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)} in all)"
