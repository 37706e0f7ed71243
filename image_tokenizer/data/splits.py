"""The rules of splits: how a folder divides into them, what a missing one says, and which one is held out.

Splits are named as `datasets` names them: an image folder's split folders (train/, test/, validation/ and the
other names `imagefolder` recognises), a saved DatasetDict's keys, a Hub dataset's splits, emoji's train and test.
A folder without split folders, a saved single Dataset and the shapes generator are one undivided set, which
`datasets` calls `train`. `pretokenize` takes every split unless one is named; an evaluation takes test, then
validation (an undivided set whole), and never falls back to the training images. data/specs.py applies these
rules to a dataset spec (`dataset_splits`, `check_split`, `pretokenize_splits`, `evaluation_split`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError, option

UNDIVIDED = "train"  # what `datasets` calls the one split of a source without splits
EVALUATION_ORDER = ("test", "validation")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def folder_splits(root: str | Path) -> dict[str, list[Path]]:
    """The image files of each split of a folder, as `datasets`' imagefolder splits it: `train/`, `test/`,
    `validation/` (and their synonyms) folders, or one `train` split when there are none."""
    return folder_layout(root)[0]


def has_split_folders(root: str | Path) -> bool:
    """Whether `datasets` finds named splits in the folder (split folders or split names in file names), rather
    than reading it as one undivided `train` split."""
    return folder_layout(root)[1]


def folder_layout(root: str | Path) -> tuple[dict[str, list[Path]], bool]:
    """(folder_splits, has_split_folders) from one walk of the folder."""
    from datasets.data_files import DEFAULT_PATTERNS_ALL, DataFilesDict, EmptyDatasetError, get_data_patterns

    root = Path(root)
    try:
        patterns = get_data_patterns(str(root))
        files = DataFilesDict.from_patterns(patterns, base_path=str(root))
    except EmptyDatasetError:
        patterns, files = DEFAULT_PATTERNS_ALL, {}
    base = root.resolve()
    splits = {str(name): sorted(root / os.path.relpath(f, base) for f in found if Path(f).suffix.lower() in IMAGE_SUFFIXES)
              for name, found in files.items()}
    splits = {name: found for name, found in splits.items() if found}
    if not splits:
        raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return splits, patterns != DEFAULT_PATTERNS_ALL


def split_files(root: str | Path, split: str) -> list[Path]:
    """The image files of one split; a split the folder lacks is an error naming those it has."""
    files, divided = folder_layout(root)
    return files[named_split(str(root), split, sorted(files) if divided else None)]


def named_split(where: str, split: str, splits: Sequence[str] | None) -> str:
    """`split` when it is one of `splits` (None: an undivided source, whose one split is `train`), else an error."""
    if split in (splits or [UNDIVIDED]):
        return split
    if splits is None:
        raise DataError(f"{where}: no split {split!r}: it has no split folders (train/, test/, validation/), so it is "
                        f"one set of images, which datasets calls 'train'; drop {option('split')} to read all of it")
    raise DataError(f"{where}: no split {split!r}; its splits are {sorted(splits)} (split folders such as train/ and test/)")


def held_out_split(splits: Sequence[str] | None, where: str, flag: str = "split") -> str:
    """The first of test and validation that `splits` has (None: undivided, read whole), else an error."""
    if splits is None:
        return UNDIVIDED
    for name in EVALUATION_ORDER:
        if name in splits:
            return name
    raise DataError(f"{where}: no 'test' or 'validation' split to evaluate on; its splits are {sorted(splits)}; "
                    f"name one with {option(flag)} if you mean to score those images")
