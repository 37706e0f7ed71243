"""Training data: shapes generator, image folder or `datasets` dataset, in a deterministic, resumable order.

Batch `s` is a pure function of (seed, s): a resumed run sees exactly the batches it would have seen.
Each process takes its own slice of the global batch. Unreadable images are skipped (the next readable item
stands in) and reported with each batch, so the caller counts each file once however often it comes up, or they
stop the run with --strict-data.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from image_tokenizer.config import PreprocessingConfig
from image_tokenizer.data.sources import DataError, ImageSource, open_source  # noqa: F401  (re-exported)
from image_tokenizer.errors import ImageTokenizerError
from image_tokenizer.image_processing import normalize


def global_batch_indices(step: int, batch_size: int, num_items: int, seed: int) -> np.ndarray:
    """Indices of the global batch of `step`: consecutive slices of per-epoch permutations."""
    start = step * batch_size
    indices = []
    while len(indices) < batch_size:
        epoch, offset = divmod(start + len(indices), num_items)
        perm = np.random.default_rng([seed, epoch]).permutation(num_items)
        indices.extend(perm[offset : offset + batch_size - len(indices)].tolist())
    return np.asarray(indices)


class StepBatches(torch.utils.data.Dataset):
    """Item k is this process's share of the batch for step start_step + k, as uint8 [b, H, W, 3], with the
    [source index, error] of each unreadable image skipped on the way."""

    def __init__(
        self, source: ImageSource, batch_size: int, seed: int, start_step: int, end_step: int,
        rank: int = 0, world_size: int = 1, strict: bool = False,
    ):
        if batch_size % world_size:
            raise DataError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.start_step, self.end_step = start_step, end_step
        self.rank, self.world_size, self.strict = rank, world_size, strict

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, list[list]]:
        indices = global_batch_indices(self.start_step + k, self.batch_size, len(self.source), self.seed)
        images, skipped = [], []
        for index in indices[self.rank :: self.world_size]:
            images.append(self._load_readable(int(index), skipped))
        return torch.from_numpy(np.stack(images)), skipped

    def _load_readable(self, index: int, skipped: list[list]) -> np.ndarray:
        for attempt in range(len(self.source)):
            candidate = (index + attempt) % len(self.source)
            try:
                return self.source.load(candidate)
            except ImageTokenizerError as error:
                if self.strict:
                    raise DataError(f"unreadable training image (--strict-data): {error}") from None
                warnings.warn(f"skipping unreadable training image: {error}", stacklevel=2)
                skipped.append([candidate, str(error)])
        raise DataError(f"no readable image in {self.source.describe()}")


def to_model_input(images: torch.Tensor, preprocessing: PreprocessingConfig) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W]."""
    return normalize(images.permute(0, 3, 1, 2), preprocessing)
