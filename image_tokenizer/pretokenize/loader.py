"""Pre-tokenization's accelerator path: images are decoded and resized in DataLoader worker processes, and the
tokenizer receives large uint8 batches, which it normalises and encodes on its device.

The pixels are those of the one-process path (the same `prepare_image`), so the ids are the same on the
same device. The ids land in one preallocated array; `pretokenize` then attaches them to the rows (rows.AttachIds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ImageTokenizerConfig
from .rows import PreparedRows, keep_or_stop, prepare_cells

if TYPE_CHECKING:
    from ..tokenizer import ImageTokenizer


class DecodeRows:
    """The DataLoader's collate_fn: row indices -> PreparedRows (positions are the rows' places in the batch).
    Holds the dataset, the config and the pixel budget, not the model."""

    def __init__(self, dataset: Any, image_column: str, config: ImageTokenizerConfig, flip: bool,
                 max_pixels: int | None = None):
        self.dataset, self.image_column, self.config, self.flip = dataset, image_column, config, flip
        self.max_pixels = max_pixels

    def __call__(self, rows: list[int]) -> PreparedRows:
        return prepare_cells(self.dataset[rows][self.image_column], rows, self.config, self.flip, self.max_pixels)


def encode_rows(
    dataset: Any, tokenizer: ImageTokenizer, image_column: str, flip: bool, skip_bad: bool, batch_size: int, num_workers: int,
    dtype: str, max_pixels: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[int, str]]:
    """Every row's flat ids [N, ids per image] in the output dtype (and its mirror's), and the rows whose image could not be
    used (skip_bad; undecodable, over max_pixels, too small) with why. Workers read only the image column."""
    from datasets.utils import tqdm
    from torch.utils.data import DataLoader

    loader = DataLoader(
        range(len(dataset)), batch_size=batch_size, num_workers=num_workers,
        collate_fn=DecodeRows(dataset.select_columns([image_column]), image_column, tokenizer.config, flip, max_pixels),
        pin_memory=tokenizer.device.type == "cuda", prefetch_factor=4 if num_workers else None,
    )
    ids = np.zeros((len(dataset), tokenizer.layout.ids_per_image), dtype=dtype)
    mirrored = np.zeros_like(ids) if flip else None
    errors: dict[int, str] = {}
    for batch in tqdm(loader, desc="pretokenize", unit="batch"):
        for position, message in batch.errors.items():
            errors[batch.indices[position]] = keep_or_stop(message, skip_bad)
        if batch.pixels is None:
            continue
        good = [batch.indices[position] for position in batch.positions]
        ids[good] = tokenizer.encode(batch.pixels).reshape(len(good), -1).numpy()
        if mirrored is not None:
            mirrored[good] = tokenizer.encode(batch.mirrored).reshape(len(good), -1).numpy()
    return ids, mirrored, errors
