"""Id grids as text-tokenizer sequences, and back: special tokens, padding, truncation, attention masks.

The keywords mean what they mean on a transformers tokenizer: `padding` False (default), True/"longest" or
"max_length"; `truncation` cuts the image ids so that the whole sequence, specials included, fits
`max_length`; `return_attention_mask`. `<boi>`/`<eoi>` frame the image when `add_special_tokens` (the default,
like BOS/EOS on a text tokenizer); a pre-tokenized dataset's `input_ids` hold the bare grid, row-major.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InvalidIdsError, InvalidRequestError
from .layouts import grid_for

__all__ = ["SequenceOptions", "empty_sequences", "grid_for", "image_span", "to_sequences"]

PADDING = {False: False, "do_not_pad": False, True: "longest", "longest": "longest", "max_length": "max_length"}


@dataclass(frozen=True)
class SequenceOptions:
    """The text-tokenizer keywords of one __call__, checked once."""

    add_special_tokens: bool = True
    padding: bool | str = False
    truncation: bool = False
    max_length: int | None = None
    return_attention_mask: bool = True
    return_tensors: str | None = None

    def __post_init__(self) -> None:
        if self.padding not in PADDING:
            raise InvalidRequestError(f"padding must be False, True, 'longest', 'max_length' or 'do_not_pad', got {self.padding!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise InvalidRequestError(f"max_length must be a positive integer, got {self.max_length!r}")
        if self.return_tensors not in (None, "pt", "np"):
            raise InvalidRequestError(f"return_tensors must be None, 'pt' or 'np', got {self.return_tensors!r}")
        if self.add_special_tokens and self.max_length is not None and self.max_length < 2 and self.truncation:
            raise InvalidRequestError("max_length must leave room for <boi> and <eoi> (at least 2)")


def to_sequences(grids: list[torch.Tensor], options: SequenceOptions, boi: int, eoi: int, pad: int,
                 model_max_length: int) -> dict[str, list[list[int]]]:
    """Grids [h, w] -> {'input_ids', 'attention_mask'} lists, with specials, truncation and padding applied."""
    specials = 2 if options.add_special_tokens else 0
    limit = options.max_length or model_max_length
    sequences = []
    for grid in grids:
        ids = grid.reshape(-1).tolist()
        if options.truncation:
            ids = ids[: max(limit - specials, 0)]
        sequences.append([boi, *ids, eoi] if options.add_special_tokens else ids)
    mode = PADDING[options.padding]
    target = max((len(s) for s in sequences), default=0) if mode == "longest" else limit if mode == "max_length" else None
    if target is not None and any(len(s) > target for s in sequences):
        raise InvalidRequestError(f"a sequence of {max(len(s) for s in sequences)} ids is longer than max_length {target}; "
                                  "pass truncation=True to cut it")
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": []}
    for seq in sequences:
        fill = target - len(seq) if target is not None else 0
        out["input_ids"].append(seq + [pad] * fill)
        out["attention_mask"].append([1] * len(seq) + [0] * fill)
    if options.return_tensors and len({len(s) for s in out["input_ids"]}) > 1:
        raise InvalidRequestError("sequences of different lengths cannot form one tensor; pass padding=True")
    if not options.return_attention_mask:
        del out["attention_mask"]
    return out


def empty_sequences(options: SequenceOptions, grid_ids: int) -> dict:
    """An empty batch: [0, L] arrays (L as for the trained grid), or empty lists."""
    length = grid_ids + (2 if options.add_special_tokens else 0)
    keys = ["input_ids"] + (["attention_mask"] if options.return_attention_mask else [])
    return {k: np.zeros((0, length), np.int64) if options.return_tensors else [] for k in keys}


def image_span(sequence: torch.Tensor, boi: int, eoi: int, vocab_size: int, vocab_len: int) -> torch.Tensor:
    """The image ids of one flat sequence: what lies between <boi> and <eoi> when framed (so a class token or
    text before <boi> goes too), less the special ids at either end (padding, an unframed <eoi>). A special id
    among the image ids is an error naming its position: dropping it would shift every id after it."""
    offset = 0
    positions = torch.nonzero(sequence == boi)
    if len(positions):
        offset = int(positions[0]) + 1
        sequence = sequence[offset:]
        ends = torch.nonzero(sequence == eoi)
        if len(ends):
            sequence = sequence[: int(ends[0])]
    special = (sequence >= vocab_size) & (sequence < vocab_len)  # invalid ids stay, to be reported
    kept = torch.nonzero(~special)
    if not len(kept):
        return sequence[:0]
    first, last = int(kept[0]), int(kept[-1])
    inner = torch.nonzero(special[first : last + 1])
    if len(inner):
        at = first + int(inner[0])
        raise InvalidIdsError(f"id {int(sequence[at])} at position {offset + at} is a special token among the image ids "
                              f"(image token ids are 0..{vocab_size - 1}); remove it, or decode the ids it separates on their own")
    return sequence[first : last + 1]
