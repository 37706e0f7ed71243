"""What a pre-tokenization reads and where it runs: a dataset spec -> its splits as datasets, and this process's device.

Which splits a spec has, and which are taken, is decided in data/splits.py; this module only loads them."""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import DataError, PretokenizeError, option


def load_image_splits(
    spec: str, split: str | None = None, num: int = 1000, seed: int = 0, streaming: bool = False, resolution: int = 64
) -> Any:
    """Every split of a dataset spec (or the one named), as a `datasets.DatasetDict` keyed by split name (an
    IterableDatasetDict for a streamed `hf:NAME`): `shapes` (the generator: `num` images from `seed`, one `train`
    split), `emoji`, an image folder (its split folders, read as `datasets`' imagefolder reads them, with a
    `file_name` column; a folder without split folders is one `train` split), a dataset saved with save_to_disk,
    or `hf:NAME` (load_dataset, honouring HF_HUB_OFFLINE; streamed with streaming=True). A split the spec lacks
    is an error naming those it has."""
    import datasets

    from ..data.splits import pretokenize_splits

    try:
        names = pretokenize_splits(spec, split)
        parts = {name: _load_split(spec, name, num, seed, streaming, resolution) for name in names}
    except DataError as error:
        raise PretokenizeError(str(error)) from None
    streamed = any(isinstance(part, datasets.IterableDataset) for part in parts.values())
    return (datasets.IterableDatasetDict if streamed else datasets.DatasetDict)(parts)


def load_image_dataset(
    spec: str, split: str = "train", num: int = 1000, seed: int = 0, streaming: bool = False, resolution: int = 64
) -> Any:
    """One split of a dataset spec (see load_image_splits) as a `datasets.Dataset` (or IterableDataset)."""
    return load_image_splits(spec, split, num, seed, streaming, resolution)[split]


def _load_split(spec: str, split: str, num: int, seed: int, streaming: bool, resolution: int) -> Any:
    from ..data.sources import image_folder_dataset, load_dataset_spec

    if spec == "shapes":
        from ..data.shapes import to_dataset

        return to_dataset(num, seed=seed)
    if spec == "emoji":
        from ..data.emoji import emoji_dataset

        return emoji_dataset(split, resolution)
    dataset = load_dataset_spec(spec, split, streaming=streaming)
    return dataset if dataset is not None else image_folder_dataset(spec, split)


def split_name(dataset: Any) -> str:
    """The split a `datasets` dataset says it is (`test` of `test[:10%]`), else `train`, as datasets names a
    dataset without splits."""
    found = re.match(r"\w+", str(getattr(dataset, "split", None) or ""))
    return found.group(0) if found else "train"


def one_split(dataset: Any, source: str | None) -> tuple[str, Any]:
    """(name, dataset) of a one-split DatasetDict, or of a dataset; several splits are refused: a streaming output
    is one resumable run (its state, shards, node split and merge), so it holds one split."""
    if not isinstance(dataset, dict):
        return split_name(dataset), dataset
    if len(dataset) != 1:
        raise PretokenizeError(f"{source or 'the dataset'} has splits {sorted(dataset)}, and a streaming output holds "
                               f"one: name one with {option('split')}, and write each split to its own output folder")
    return next(iter(dataset.items()))


def rank_device(device: str | None, env: dict[str, str] | None = None) -> str | None:
    """"cuda" under torchrun means this process's own GPU (LOCAL_RANK); any other device is kept as given."""
    env = os.environ if env is None else env
    if device == "cuda" and "LOCAL_RANK" in env:
        return f"cuda:{int(env['LOCAL_RANK'])}"
    return device
