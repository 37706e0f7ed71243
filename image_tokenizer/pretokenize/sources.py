"""What a pre-tokenization reads and where it runs: a dataset spec -> a dataset, and this process's device."""

from __future__ import annotations

import os
from typing import Any

from ..errors import DataError, PretokenizeError


def load_image_dataset(
    spec: str, split: str = "train", num: int = 1000, seed: int = 0, streaming: bool = False, resolution: int = 64
) -> Any:
    """`shapes` (the generator: `num` images from `seed`), `emoji` (the `split` of data/emoji.py's source,
    rendered at `resolution`), an image folder (its `split` folder, read as `datasets`' imagefolder reads it,
    with a `file_name` column), a dataset saved with save_to_disk, or `hf:NAME` (load_dataset, honouring
    HF_HUB_OFFLINE; streamed with streaming=True, the others are read as they are)."""
    from ..data.sources import image_folder_dataset, load_dataset_spec

    if spec == "shapes":
        from ..data.shapes import to_dataset

        return to_dataset(num, seed=seed)
    try:
        if spec == "emoji":
            from ..data.emoji import emoji_dataset

            return emoji_dataset(split, resolution)
        dataset = load_dataset_spec(spec, split, streaming=streaming)
        return dataset if dataset is not None else image_folder_dataset(spec, split)
    except DataError as error:
        raise PretokenizeError(str(error)) from None


def rank_device(device: str | None, env: dict[str, str] | None = None) -> str | None:
    """"cuda" under torchrun means this process's own GPU (LOCAL_RANK); any other device is kept as given."""
    env = os.environ if env is None else env
    if device == "cuda" and "LOCAL_RANK" in env:
        return f"cuda:{int(env['LOCAL_RANK'])}"
    return device
