"""Nothing outside the folder: every file a loader or converter opens must lie inside the folder it came from.

A name that a file gives (an index's weight_map entry, a config's path) or that a folder holds (a symlink) may
point anywhere on the user's machine; reading it would put someone else's weights into a model the user may push.
So each path is checked twice: as written (an absolute name or `../` leaves the folder) and with every symlink
resolved. A snapshot in the Hugging Face cache is the one folder whose files are symlinks by design (into the
repo's `blobs/`), so under a snapshot the resolved file may lie anywhere in that repo's cache folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConversionError, ImageTokenizerError

HUB_CACHE_PREFIX = "models--"  # huggingface_hub's cache: models--owner--name/{snapshots/<commit>/, blobs/, refs/}


def inside(root: str | os.PathLike, path: str | os.PathLike, what: str | None = None,
           error: type[ImageTokenizerError] = ConversionError) -> Path:
    """`path` (what the caller would open, e.g. root / name), refused with `error` unless it lies inside `root`
    both as written and with symlinks resolved. `what` says where the name came from, for the message
    (default: the path itself)."""
    root, path = Path(root), Path(path)
    written_root = Path(os.path.abspath(root))
    written = Path(os.path.abspath(path))  # normalises `..` without following links
    try:
        resolved = written.resolve()
        allowed = link_root(written_root.resolve())
    except (OSError, ValueError, RuntimeError) as problem:  # a NUL byte, a symlink loop, a name too long
        raise error(f"{what or path}: cannot be resolved inside {root} ({problem})") from None
    if written.is_relative_to(written_root) and resolved.is_relative_to(allowed):
        return path
    via = f" (a symlink to {resolved})" if written.is_relative_to(written_root) else ""
    raise error(f"{what or path}{via} lies outside {root}; image-tokenizer reads only files inside the source "
                "folder (remove the entry or the link, or copy the file into the folder)")


def link_root(folder: Path) -> Path:
    """Where symlinks in `folder` (resolved) may lead: the folder itself, or for a folder under a Hugging Face cache
    snapshot (models--owner--name/snapshots/<commit>/...), that repo's cache folder, which holds the blobs."""
    parts = folder.parts
    for i in range(len(parts) - 3, -1, -1):
        if parts[i].startswith(HUB_CACHE_PREFIX) and parts[i + 1] == "snapshots":
            return Path(*parts[: i + 1])
    return folder


def files_inside(folder: str | os.PathLike, names: list[str] | tuple[str, ...],
                 error: type[ImageTokenizerError] = ConversionError) -> None:
    """Check each of `names` that `folder` holds (a file, or a link, dangling or not) with `inside`."""
    folder = Path(folder)
    for name in names:
        path = folder / name
        if path.is_symlink() or path.exists():
            inside(folder, path, error=error)


def overlap(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths, resolved, are the same or one lies inside the other."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)
