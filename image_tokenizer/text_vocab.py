"""Image tokens inside a text model's vocabulary: add `<img_xxxxx>`, `<boi>`, `<eoi>` (and `<eol>`) to a
transformers text tokenizer, and convert image ids <-> text-vocab ids with vectorised lookups, for every token
layout (layouts.py: a grid, multiscale scales, residual depth)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import InvalidIdsError
from .inputs import as_id_tensor, as_ids
from .layouts import IdLayout

if TYPE_CHECKING:
    from .tokenizer import ImageTokenizer

EOL = "<eol>"


@dataclass
class ImageTextMapping:
    """Where the image vocabulary sits inside a text vocabulary."""

    image_to_text: np.ndarray  # [K] text id of image token k
    boi_id: int
    eoi_id: int
    eol_id: int | None
    text_vocab_size: int

    def __post_init__(self) -> None:
        self.text_to_image = np.full(self.text_vocab_size, -1, dtype=np.int64)
        self.text_to_image[self.image_to_text] = np.arange(len(self.image_to_text))

    @property
    def codebook_size(self) -> int:
        return len(self.image_to_text)

    def image_ids_to_text(self, ids: Any) -> torch.Tensor:
        """Image ids (any shape) -> text-vocab ids of the same shape."""
        array = as_ids(ids, self.codebook_size, lambda bad: f"image id {bad.value} is outside the codebook (0..{bad.limit - 1})").numpy()
        return torch.from_numpy(self.image_to_text[array])

    def text_ids_to_image(self, text_ids: Any) -> torch.Tensor:
        """Text-vocab ids that are all image tokens -> image ids; anything else is a clear error."""
        array = _as_long_array(text_ids)
        inside = (array >= 0) & (array < self.text_vocab_size)
        mapped = np.full(array.shape, -1, dtype=np.int64)
        mapped[inside] = self.text_to_image[array[inside]]
        if (mapped < 0).any():
            position = tuple(int(i) for i in np.argwhere(mapped < 0)[0])
            raise InvalidIdsError(
                f"text id {int(array[position])} at position {position} is not an image token "
                f"(image tokens are {self.image_to_text.min()}..{self.image_to_text.max()} in this text vocabulary)"
            )
        return torch.from_numpy(mapped)


def _as_long_array(ids: Any) -> np.ndarray:
    return as_id_tensor(ids).numpy()


def extend_text_tokenizer(image_tokenizer: ImageTokenizer, text_tokenizer: Any, add_eol: bool = False) -> ImageTextMapping:
    """Add the image tokens (as special added tokens, never split or merged) and <boi>/<eoi>[/<eol>] to a
    transformers text tokenizer; returns the mapping. Resize the text model's embeddings to len(text_tokenizer)."""
    image_tokens = image_tokenizer.vocab.image_tokens()
    boundaries = ["<boi>", "<eoi>"] + ([EOL] if add_eol else [])
    before = len(text_tokenizer)
    text_tokenizer.add_tokens(boundaries + image_tokens, special_tokens=True)
    lookup = dict(zip(boundaries, text_tokenizer.convert_tokens_to_ids(boundaries)))
    return ImageTextMapping(
        image_to_text=_image_token_ids(text_tokenizer, image_tokens, before + len(boundaries)),
        boi_id=lookup["<boi>"],
        eoi_id=lookup["<eoi>"],
        eol_id=lookup.get(EOL),
        text_vocab_size=len(text_tokenizer),
    )


def _image_token_ids(text_tokenizer: Any, image_tokens: list[str], first_new_id: int) -> np.ndarray:
    """Text ids of the image tokens just added. When every token was new, transformers numbers them in order from
    first_new_id: checked on a sample, that saves looking up K strings (262,144 for an 18-bit LFQ)."""
    k = len(image_tokens)
    expected = np.arange(first_new_id, first_new_id + k, dtype=np.int64)
    if len(text_tokenizer) == first_new_id + k:
        sample = np.unique(np.linspace(0, k - 1, num=min(k, 257)).astype(np.int64))
        found = text_tokenizer.convert_tokens_to_ids([image_tokens[i] for i in sample])
        if np.array_equal(np.asarray(found, dtype=np.int64), expected[sample]):
            return expected
    return np.asarray(text_tokenizer.convert_tokens_to_ids(image_tokens), dtype=np.int64)


def to_text_ids(ids: Any, mapping: ImageTextMapping, add_boundaries: bool = True, layout: IdLayout | None = None) -> torch.Tensor:
    """One image's ids -> a flat text-id sequence: <boi>, the ids in the layout's order with <eol> after each row
    (of every scale) if mapped, <eoi>. Without a layout, the ids are one [h, w] grid."""
    image = _as_long_array(ids)
    if layout is None and image.ndim != 2:
        raise InvalidIdsError(f"to_text_ids expects one [h, w] grid, got shape {image.shape}")
    if layout is not None:
        if image.ndim != layout.ndim:
            raise InvalidIdsError(f"to_text_ids expects one image's ids, shape {list(layout.shape)} for this "
                                  f"{layout.kind} tokenizer, got shape {image.shape}")
        layout.check_image_shape(image.shape)
    flat = mapping.image_ids_to_text(image).reshape(-1)
    if mapping.eol_id is not None:
        lengths = layout.row_lengths(image.shape) if layout else [image.shape[1]] * image.shape[0]
        flat = torch.from_numpy(np.insert(flat.numpy(), np.cumsum(lengths), mapping.eol_id))
    if add_boundaries:
        flat = torch.cat([torch.tensor([mapping.boi_id]), flat, torch.tensor([mapping.eoi_id])])
    return flat


def from_text_ids(
    text_ids: Any, mapping: ImageTextMapping, grid_size: tuple[int, int], grid: tuple[int, int] | None = None,
    layout: IdLayout | None = None,
) -> torch.Tensor:
    """The first image span of a text-id sequence (between <boi> and <eoi>, or all of it) -> one image's ids in
    the layout (default: a grid [h, w]); a [B, L] batch -> a batch. The grid is `grid`, else the trained
    `grid_size`, else the square one."""
    layout = layout or IdLayout("grid", tuple(grid_size))
    array = _as_long_array(text_ids)
    if array.ndim == 2:
        images = [from_text_ids(row, mapping, grid_size, grid, layout) for row in array]
        if len({tuple(g.shape) for g in images}) > 1:
            raise InvalidIdsError("the sequences of this batch hold grids of different sizes; decode them one by one")
        return torch.stack(images) if images else torch.empty((0, *layout.shape), dtype=torch.long)
    if array.ndim != 1:
        raise InvalidIdsError(f"text ids must be one sequence [L] or a batch [B, L], got shape {array.shape}")
    seq = array
    starts = np.nonzero(seq == mapping.boi_id)[0]
    if starts.size:
        seq = seq[starts[0] + 1 :]
        ends = np.nonzero(seq == mapping.eoi_id)[0]
        seq = seq[: ends[0]] if ends.size else seq
    if mapping.eol_id is not None:
        seq = seq[seq != mapping.eol_id]
    shape = layout.shape_of_sequence(seq.size, grid)
    return mapping.text_ids_to_image(seq).reshape(shape)
