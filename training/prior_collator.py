"""The prior's batches: rows of ids (and a class label) -> the causal LM's inputs and targets, with the null class
dropped in deterministically for classifier-free guidance, a next-scale layout's teacher-forcing batch, and a
maskgit layout's masked batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from image_tokenizer import TokenLayout
from image_tokenizer.prior.maskgit import masked_batch, training_mask
from image_tokenizer.prior.next_scale import teacher_forcing
from training.config_cli import TrainingError


class PriorCollator:
    """Rows {input_ids, <label>} -> {input_ids, labels} with the layout's prefix; only image ids are predicted.
    A next-scale layout gets its teacher-forcing batch instead (prior/next_scale.py: the scales' inputs, the
    block-causal 4D attention mask and the targets aligned with their positions); a maskgit layout, its masked
    batch (prior/maskgit.py: a mask_schedule-drawn share of each row's ids, at least one, replaced by <mask> and
    the only ones predicted), the masks drawn like the label dropout.

    In training mode each class label is replaced by the null class with probability p_uncond. The draw is a
    function of (seed, epoch, row index), not of a random stream: the Trainer's dataloader collates one batch
    ahead of the step it checkpoints, so a stream would differ after a resume; this way a resumed run drops
    exactly the labels an uninterrupted one drops."""

    def __init__(self, layout: TokenLayout, label_column: str | None, class_values: list, p_uncond: float,
                 seed: int = 0, train: bool = True, mask_schedule: str = "cosine"):
        self.layout, self.label_column, self.p_uncond, self.seed, self.train = layout, label_column, p_uncond, seed, train
        self.mask_schedule = mask_schedule
        self.class_index = {value: index for index, value in enumerate(class_values)}
        self.epoch = 0  # set by EpochToCollator

    def for_eval(self) -> PriorCollator:
        return PriorCollator(self.layout, self.label_column, list(self.class_index), self.p_uncond, self.seed,
                             train=False, mask_schedule=self.mask_schedule)

    def _rng(self, row: dict[str, Any], index: int, stream: int = 0) -> np.random.Generator:
        """The draws of one row: a function of (seed, epoch, row index, stream), not of a random stream."""
        key = [self.seed, self.epoch, int(row.get(ROW_COLUMN, index))] + ([stream] if stream else [])
        return np.random.default_rng(key)

    def _dropped(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        draws = [self._rng(row, i).random() for i, row in enumerate(rows)]
        return torch.tensor(draws) < self.p_uncond

    def _masks(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        n = self.layout.num_image_tokens
        return torch.from_numpy(np.stack([training_mask(n, self._rng(row, i, 1), self.mask_schedule) for i, row in enumerate(rows)]))

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(np.stack([np.asarray(row["input_ids"], dtype=np.int64) for row in rows]))
        if ids.shape[1] != self.layout.num_image_tokens:
            raise TrainingError(f"rows hold {ids.shape[1]} ids; the layout needs {self.layout.num_image_tokens} "
                                f"({self.layout.id_layout.describe()})")
        labels = None
        if self.layout.conditional:
            labels = torch.tensor([self.class_index[row[self.label_column]] for row in rows], dtype=torch.long)
            prefix = self.layout.prefix(labels, len(rows))
            if self.train and self.p_uncond > 0:
                prefix[self._dropped(rows), 0] = self.layout.null_class_token_id
        else:
            prefix = self.layout.prefix(None, len(rows))
        if self.layout.next_scale:
            return teacher_forcing(self.layout, prefix, ids)
        if self.layout.maskgit:
            return masked_batch(self.layout, prefix, ids, self._masks(rows))
        input_ids = torch.cat([prefix, ids], dim=1)
        targets = input_ids.clone()
        targets[:, : self.layout.prefix_length] = -100
        return {"input_ids": input_ids, "labels": targets}


ROW_COLUMN = "row_index"


def epoch_callback(collator: PriorCollator) -> Any:
    """A TrainerCallback that tells the collator which epoch it is collating (also after a resume)."""
    from transformers import TrainerCallback

    class EpochToCollator(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            collator.epoch = int(state.epoch or 0)

    return EpochToCollator()
