"""Many files in, many files out: folders expanded to their images, per-file failures skipped and counted
(--skip-bad) or stopping the run with the file named, output names that never collide within a run, and the
record of which input each output came from."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data.sources import image_files
from ..errors import CLIError, ImageTokenizerError
from ..fileio import atomic_write_text
from ..image_processing import load_image, prepare_image


def expand_image_paths(paths: Sequence[str]) -> list[str]:
    """The paths as given, each folder replaced by its image files (recursively, in sorted order)."""
    expanded: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            found = image_files(path)
            if not found:
                raise CLIError(f"{path}: a folder without image files")
            expanded.extend(str(p) for p in found)
        else:
            expanded.append(path)
    return expanded


@dataclass
class ReadImages:
    """The images that can be encoded, their paths, and the files skipped (path -> why)."""

    paths: list[str] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def read_images(
    paths: Sequence[str], config: Any, progress: bool, skip_bad: bool, max_pixels: int | None = None,
    native_size: bool = False, max_native_pixels: int | None = None,
) -> ReadImages:
    """Open every file (folders expanded) and check it as the model will take it, one file at a time: a file
    that cannot be used (undecodable, too small, over a pixel budget, a mode without RGB) is skipped and counted
    with skip_bad, else it stops the run, named."""
    paths = expand_image_paths(paths)
    read = ReadImages()
    for index, path in enumerate(tqdm(paths, desc="reading", unit="img", disable=not progress or len(paths) < 2)):
        try:
            image = load_image(path, max_pixels)
            prepare_image(image, config, index, native_size, max_native_pixels)
        except ImageTokenizerError as error:
            message = str(error) if str(error).startswith(path) else f"{path}: {error}"
            if not skip_bad:
                raise CLIError(f"{message}; pass --skip-bad to skip such files") from None
            read.skipped[path] = message
            continue
        read.paths.append(path)
        read.images.append(image)
    if read.skipped:
        print(f"skipped {len(read.skipped)} file(s) that cannot be used, e.g. {next(iter(read.skipped.values()))}", file=sys.stderr)
    if not read.images:
        raise CLIError("no image could be used")
    return read


def output_names(paths: Sequence[str]) -> list[str]:
    """One distinct name per input: its stem; inputs sharing a stem add their extension (a_jpg, a_webp), and
    any still shared (the same name in two folders) their position, so no output overwrites another."""
    names = [Path(p).stem for p in paths]
    shared = Counter(names)
    names = [f"{n}_{Path(p).suffix.lstrip('.')}" if shared[n] > 1 else n for n, p in zip(names, paths)]
    shared = Counter(names)
    return [f"{n}_{i:04d}" if shared[n] > 1 else n for i, n in enumerate(names)]


def manifest_path(output: str | Path) -> Path:
    """Where the record of a multi-file output goes: beside it, `ids.npy` -> `ids.files.json`."""
    output = Path(output)
    return output.with_name(f"{output.stem}.files.json")


def write_manifest(path: Path, rows: list[dict[str, Any]], skipped: dict[str, str] | None = None,
                   summary: dict[str, Any] | None = None) -> Path:
    """Which input each output (or output row) came from, the inputs skipped and why, and a summary of the run."""
    record: dict[str, Any] = {**(summary or {}), "outputs": rows}
    if skipped:
        record["skipped"] = [{"path": p, "error": e} for p, e in skipped.items()]
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path
