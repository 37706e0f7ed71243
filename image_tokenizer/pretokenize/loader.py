"""Pre-tokenization's accelerator path: images are decoded and resized in DataLoader worker processes, and the
tokenizer receives large uint8 batches, which it normalises and encodes on its device.

The pixels are those of the one-process path (the same `prepare_image`), so the ids are the same on the
same device. The ids land in one preallocated array; `pretokenize` then attaches them to the rows (rows.AttachIds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import ImageTokenizerConfig
from ..errors import ImageTokenizerError
from ..image_processing import decode_cell, prepare_image
from .rows import decode_error, keep_or_stop


@dataclass
class DecodedBatch:
    """What a worker hands back: the uint8 pixels of the rows it could decode (and their mirrors)."""

    rows: list[int] = field(default_factory=list)
    pixels: torch.Tensor | None = None  # uint8 [n, 3, H, W]
    mirrored: torch.Tensor | None = None
    errors: dict[int, str] = field(default_factory=dict)  # row -> why it could not be decoded
    failure: Exception | None = None  # an image the tokenizer refuses (too small, ...): stops the run

    def pin_memory(self) -> DecodedBatch:
        """Called by the DataLoader (pin_memory=True on a GPU): page-locked pixels copy to the device asynchronously."""
        self.pixels = None if self.pixels is None else self.pixels.pin_memory()
        self.mirrored = None if self.mirrored is None else self.mirrored.pin_memory()
        return self


class DecodeRows:
    """The DataLoader's collate_fn: row indices -> DecodedBatch. Holds the dataset and the config, not the model."""

    def __init__(self, dataset: Any, image_column: str, config: ImageTokenizerConfig, flip: bool):
        self.dataset, self.image_column, self.config, self.flip = dataset, image_column, config, flip

    def __call__(self, rows: list[int]) -> DecodedBatch:
        batch, pixels, mirrored = DecodedBatch(), [], []
        for row, cell in zip(rows, self.dataset[rows][self.image_column]):
            try:
                image = decode_cell(cell)
            except Exception as error:  # noqa: BLE001  (PIL raises many types for bad bytes)
                batch.errors[row] = decode_error(row, error)
                continue
            try:
                pixels.append(prepare_image(image, self.config, row))
                if self.flip:
                    mirrored.append(prepare_image(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), self.config, row))
            except ImageTokenizerError as error:  # raised again in the main process, with its own message
                batch.failure = error
                return batch
            batch.rows.append(row)
        if pixels:
            batch.pixels = torch.stack(pixels)
            batch.mirrored = torch.stack(mirrored) if self.flip else None
        return batch


def encode_rows(
    dataset: Any, tokenizer: Any, image_column: str, flip: bool, skip_bad: bool, batch_size: int, num_workers: int,
    dtype: str,
) -> tuple[np.ndarray, np.ndarray | None, dict[int, str]]:
    """Every row's ids [N, h*w] in the output dtype (and its mirror's), and the rows that could not be decoded
    (skip_bad) with why. Workers read only the image column."""
    from datasets.utils import tqdm
    from torch.utils.data import DataLoader

    loader = DataLoader(
        range(len(dataset)), batch_size=batch_size, num_workers=num_workers,
        collate_fn=DecodeRows(dataset.select_columns([image_column]), image_column, tokenizer.config, flip),
        pin_memory=tokenizer.device.type == "cuda", prefetch_factor=4 if num_workers else None,
    )
    h, w = tokenizer.grid_size
    ids = np.zeros((len(dataset), h * w), dtype=dtype)
    mirrored = np.zeros_like(ids) if flip else None
    errors: dict[int, str] = {}
    for batch in tqdm(loader, desc="pretokenize", unit="batch"):
        if batch.failure is not None:
            raise batch.failure
        for row, message in batch.errors.items():
            errors[row] = keep_or_stop(message, skip_bad)
        if batch.pixels is None:
            continue
        ids[batch.rows] = tokenizer.encode(batch.pixels).reshape(len(batch.rows), -1).numpy()
        if mirrored is not None:
            mirrored[batch.rows] = tokenizer.encode(batch.mirrored).reshape(len(batch.rows), -1).numpy()
    return ids, mirrored, errors
