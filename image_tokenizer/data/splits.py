"""Which splits a dataset spec has, and which one a command uses: the one place for both.

Splits are named as `datasets` names them: an image folder's split folders (train/, test/, validation/ and the
other names `imagefolder` recognises), a saved DatasetDict's keys, a Hub dataset's splits, emoji's train and test.
A folder without split folders, a saved single Dataset and the shapes generator are one undivided set, which
`datasets` calls `train`. `pretokenize` takes every split unless one is named; an evaluation takes test, then
validation (an undivided set whole), and never falls back to the training images.
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


def dataset_splits(spec: str) -> list[str] | None:
    """The named splits of a dataset spec, sorted; None for one undivided set (shapes, a folder without split
    folders, a saved single Dataset)."""
    if spec == "shapes":
        return None
    if spec == "emoji":
        from .emoji import SPLITS

        return sorted(SPLITS)
    if spec.startswith("hf:"):
        import datasets

        try:
            return sorted(datasets.get_dataset_split_names(spec[3:]))
        except Exception as error:  # noqa: BLE001  (offline, missing, gated: one readable line)
            raise DataError(f"cannot list the splits of dataset {spec[3:]!r}: {error}") from None
    path = Path(spec)
    if (path / "dataset_dict.json").is_file():
        import datasets

        return sorted(datasets.load_from_disk(str(path)))
    if (path / "dataset_info.json").is_file():
        return None
    if not path.is_dir():
        raise DataError(f"{spec}: not 'shapes', 'emoji', 'hf:NAME', an image folder, or a saved dataset")
    splits, divided = folder_layout(path)
    return sorted(splits) if divided else None


def check_split(spec: str, split: str) -> str:
    """The split asked for, when the spec has it; else an error naming the splits it has. An undivided source has
    one split, `train`; a Hub dataset names its own mistakes when it is loaded."""
    return split if spec.startswith("hf:") else named_split(spec, split, dataset_splits(spec))


def named_split(where: str, split: str, splits: Sequence[str] | None) -> str:
    """`split` when it is one of `splits` (None: an undivided source, whose one split is `train`), else an error."""
    if split in (splits or [UNDIVIDED]):
        return split
    if splits is None:
        raise DataError(f"{where}: no split {split!r}: it has no split folders (train/, test/, validation/), so it is "
                        f"one set of images, which datasets calls 'train'; drop {option('split')} to read all of it")
    raise DataError(f"{where}: no split {split!r}; its splits are {sorted(splits)} (split folders such as train/ and test/)")


def pretokenize_splits(spec: str, split: str | None) -> list[str]:
    """The splits a pre-tokenization writes: the one named (checked), or every split of the spec."""
    if split is not None:
        return [check_split(spec, split)]
    return dataset_splits(spec) or [UNDIVIDED]


def evaluation_split(spec: str, split: str | None, flag: str = "split") -> str:
    """The split an evaluation scores: the one named (checked), else test, then validation; an undivided source is
    read whole (as `train`). A source with neither is an error naming its splits: scoring a tokenizer on the
    images it trained on would overstate it. `flag` names the setting in that error (eval_split in training)."""
    if split is not None:
        return check_split(spec, split)
    return held_out_split(dataset_splits(spec), spec, flag)


def held_out_split(splits: Sequence[str] | None, where: str, flag: str = "split") -> str:
    """The first of test and validation that `splits` has (None: undivided, read whole), else an error."""
    if splits is None:
        return UNDIVIDED
    for name in EVALUATION_ORDER:
        if name in splits:
            return name
    raise DataError(f"{where}: no 'test' or 'validation' split to evaluate on; its splits are {sorted(splits)}; "
                    f"name one with {option(flag)} if you mean to score those images")
