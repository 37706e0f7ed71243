"""What a pre-tokenization reads and where it runs: a dataset spec's splits (data/specs.py loads them, with this
package's error), the split a dataset is, the one split of a streaming output, and this process's device."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any

from ..data.specs import load_splits
from ..errors import DataError, PretokenizeError, option

if TYPE_CHECKING:
    from .options import PretokenizeOptions


def load_image_splits(
    spec: str, split: str | None = None, num: int = 1000, seed: int = 0, streaming: bool = False, resolution: int = 64
) -> Any:
    """Every split of a dataset spec (or the one named), as a `datasets.DatasetDict` keyed by split name (an
    IterableDatasetDict for a streamed `hf:NAME`): data/specs.load_splits, whose spec forms are `shapes` (`num`
    images from `seed`, one `train` split), `emoji` (at `resolution`), an image folder (its split folders, with a
    `file_name` column), a dataset saved with save_to_disk, or `hf:NAME` (streamed with streaming=True). A spec
    or split it cannot read is a PretokenizeError naming those it has."""
    try:
        return load_splits(spec, split, num=num, seed=seed, streaming=streaming, resolution=resolution)
    except DataError as error:
        raise PretokenizeError(str(error)) from None


def load_image_dataset(
    spec: str, split: str = "train", num: int = 1000, seed: int = 0, streaming: bool = False, resolution: int = 64
) -> Any:
    """One split of a dataset spec (see load_image_splits) as a `datasets.Dataset` (or IterableDataset)."""
    return load_image_splits(spec, split, num, seed, streaming, resolution)[split]


def open_spec(dataset: Any, options: PretokenizeOptions, resolution: int) -> tuple[Any, PretokenizeOptions]:
    """A dataset as given, or a spec string as its splits (options.split, or all; a Hub dataset streamed with
    options.streaming; emoji at `resolution`) with the options naming the spec as their source."""
    if not isinstance(dataset, str):
        return dataset, options
    options = dataclasses.replace(options, source=options.source or dataset)
    return load_image_splits(dataset, options.split, streaming=options.streaming, resolution=resolution), options


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
