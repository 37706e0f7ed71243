"""The one input boundary: what a caller hands us as images or as ids becomes model input, or our error.

Images: `model_inputs` is the one call from any accepted image input to normalised pixels grouped by size;
inside it, `as_images` decides once which form a batch takes on its way to the model (ImageBatch: one uint8
tensor on the device, or PIL images). `as_uint8_images` checks the uint8 [N, H, W, 3] arrays that evaluation
and the shapes classifier take.
Ids: `as_ids` makes an int64 CPU tensor and holds the one range check (each caller words the error for its
own ids: image ids, prefix ids, class labels); `as_id_grids` shapes ids for decoding; `holds_ids` tells ids
from images where both are accepted. Used by the tokenizer, the prior, the text-vocabulary mapping and the
CLI, so every entry point accepts and refuses the same things.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import ImageTokenizerConfig
from .errors import InvalidIdsError, InvalidImageError
from .image_processing import normalize, prepare_image, to_pil_list
from .sequences import image_span
from .tensor_images import as_pixel_batch, device_can_prepare, pixel_batch_to_input


@dataclass
class ImageBatch:
    """Images on their way to the model: a uint8 [B, C, H, W] tensor on the device (arrays and tensors of
    pixels the device can prepare), or PIL images (files, PIL inputs, lists, and every other form)."""

    is_batch: bool
    pixels: torch.Tensor | None = None
    pil: list[Image.Image] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pil) if self.pixels is None else self.pixels.shape[0]


def as_images(images: Any, config: ImageTokenizerConfig, device: torch.device, native_size: bool = False) -> ImageBatch:
    """Any accepted image input -> an ImageBatch: arrays and tensors of pixels straight to the device when the
    tensor path covers them (tensor_images.py: the same pixels as PIL), everything else as PIL images, each
    checked and converted by name."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        batch = as_pixel_batch(images, device)
        if batch is not None and device_can_prepare(batch[0], config, native_size):
            return ImageBatch(batch[1], pixels=batch[0])
    pil, is_batch = to_pil_list(images)
    return ImageBatch(is_batch, pil=pil)


@dataclass
class ModelInput:
    """Normalised pixels [n, 3, H, W] on the device, one group per image size, each with the positions of its
    images in the caller's batch (one group unless native_size keeps several sizes)."""

    groups: list[tuple[list[int], torch.Tensor]]
    count: int
    is_batch: bool


def model_inputs(
    images: Any, config: ImageTokenizerConfig, device: torch.device, native_size: bool = False,
    max_native_pixels: int | None = None,
) -> ModelInput:
    """Any accepted image input -> model input: the whole way from a caller's images to the encoder, in one call."""
    batch = as_images(images, config, device, native_size)
    if batch.pixels is not None:
        pixels = pixel_batch_to_input(batch.pixels, config, native_size, max_native_pixels)
        return ModelInput([(list(range(len(batch))), pixels)], len(batch), batch.is_batch)
    tensors = pil_model_input(batch.pil, config, native_size, max_native_pixels)
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, tensor in enumerate(tensors):
        groups.setdefault(tuple(tensor.shape), []).append(index)
    stacked = [(indices, torch.stack([tensors[i] for i in indices]).to(device)) for indices in groups.values()]
    return ModelInput(stacked, len(batch), batch.is_batch)


def pil_model_input(
    images: list[Image.Image], config: ImageTokenizerConfig, native_size: bool = False, max_native_pixels: int | None = None
) -> list[torch.Tensor]:
    """PIL images -> normalised [3, H, W] tensors: size checks, the resize plan (or the native size), RGB."""
    return [normalize(prepare_image(image, config, index, native_size, max_native_pixels), config.preprocessing)
            for index, image in enumerate(images)]


def preprocess_images(
    images: Any, config: ImageTokenizerConfig, native_size: bool = False, max_native_pixels: int | None = None
) -> tuple[list[torch.Tensor], bool]:
    """Any accepted input -> normalised [3, H, W] tensors through the PIL path, and whether it was a batch."""
    pil, is_batch = to_pil_list(images)
    return pil_model_input(pil, config, native_size, max_native_pixels), is_batch


def as_uint8_images(images: Any, who: str) -> torch.Tensor:
    """uint8 images [N, H, W, 3] (a numpy array or tensor) -> a CPU-or-device uint8 tensor, as they came; anything
    else is InvalidImageError naming `who` takes them (evaluation, the shapes classifier)."""
    tensor = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if tensor.ndim != 4 or tensor.shape[-1] != 3 or tensor.dtype != torch.uint8:
        raise InvalidImageError(
            f"{who} takes uint8 images [N, H, W, 3] at the model's resolution, got {str(tensor.dtype).replace('torch.', '')} "
            f"{tuple(tensor.shape)}"
        )
    return tensor


def holds_ids(value: Any) -> bool:
    """Ids or images? Integer arrays and tensors (other than uint8) and lists of ints are ids; uint8 and float
    arrays, PIL images, paths and lists of those are images, as everywhere else in the library."""
    if isinstance(value, torch.Tensor):
        return not (value.is_floating_point() or value.dtype == torch.uint8)
    if isinstance(value, np.ndarray):
        return np.issubdtype(value.dtype, np.integer) and value.dtype != np.uint8 or value.dtype == np.bool_
    if isinstance(value, list) and value:
        first = value[0]
        return isinstance(first, (int, np.integer, list)) and not isinstance(first, bool)
    return False


def as_id_tensor(ids: Any) -> torch.Tensor:
    """Ids from a list, numpy array or tensor -> int64 CPU tensor; anything that is not integers is refused by name."""
    if ids is None:
        raise InvalidIdsError("ids are None; pass a list, numpy array or tensor of integer ids")
    if isinstance(ids, torch.Tensor):
        if ids.is_meta:
            raise InvalidIdsError("ids are a meta tensor, which holds no data")
        tensor = ids.detach().to("cpu")
        tensor = tensor.to_dense() if tensor.layout != torch.strided else tensor
    else:
        try:
            array = np.asarray(ids)
        except (ValueError, TypeError):
            raise InvalidIdsError("ids must form a rectangular array (sequences of different lengths: use batch_decode)") from None
        if array.size == 0:
            array = array.astype(np.int64)  # [] has no integers, but no non-integers either
        if array.dtype.kind not in "iub":
            raise InvalidIdsError(f"ids must be integers, got dtype {array.dtype.name}")
        tensor = torch.from_numpy(array.astype(np.int64) if array.dtype == np.uint64 else array.copy())
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise InvalidIdsError(f"ids must be integers, got dtype {str(tensor.dtype).replace('torch.', '')}")
    return tensor.long()


@dataclass(frozen=True)
class BadId:
    """The first id outside 0..limit-1: its value, its position, and how many such ids there are."""

    value: int
    position: tuple[int, ...]
    count: int
    limit: int


def as_ids(ids: Any, limit: int | None = None, explain: Callable[[BadId], str] | None = None) -> torch.Tensor:
    """Ids -> int64 CPU tensor (as_id_tensor), every one in 0..limit-1 when a limit is given; otherwise
    InvalidIdsError, worded by `explain` (default: the value, its position and the valid range)."""
    tensor = as_id_tensor(ids)
    if limit is not None:
        bad = (tensor < 0) | (tensor >= limit)
        if bool(bad.any()):
            position = tuple(int(i) for i in torch.nonzero(bad)[0])
            found = BadId(int(tensor[position]), position, int(bad.sum()), limit)
            raise InvalidIdsError(explain(found) if explain else f"id {found.value} at position {position} is out of range 0..{limit - 1}")
    return tensor


def as_id_grids(
    ids: Any, vocab: Any, skip_special_tokens: bool = True, require_flat: bool = False,
    grid_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, bool]:
    """Token ids for decoding -> a batch of image ids 0..K-1 in the layout (grids [B, h, w]; [B, N] multiscale,
    [B, h, w, D] residual), and whether they were a batch. A flat sequence (its image span when
    skip_special_tokens) takes the trained grid, a larger square one, or grid_size; one image's ids or a batch of
    them keep their shape. `vocab` is the tokenizer's ImageVocab, whose `layout` says the shapes and the trained
    grid (layouts.py)."""
    layout = vocab.layout
    per_image = layout.ndim
    tensor = as_id_tensor(ids)
    if tensor.ndim == per_image + 1 and tensor.shape[0] == 0 and not require_flat:
        return tensor, True  # an empty batch: empty results
    if tensor.numel() == 0:
        raise InvalidIdsError("got an empty id sequence")
    if require_flat and tensor.ndim != 1:
        raise InvalidIdsError(f"each sequence must be 1-D, got shape {tuple(tensor.shape)}")
    if tensor.ndim not in (1, per_image, per_image + 1):
        raise InvalidIdsError(layout.rank_error(tuple(tensor.shape)))
    if tensor.ndim == 1 and skip_special_tokens:
        tensor = image_span(tensor, vocab.boi_token_id, vocab.eoi_token_id, vocab.codebook_size, len(vocab))
    if tensor.ndim == 1:
        shape = layout.shape_of_sequence(tensor.numel(), grid_size)
    else:
        layout.check_image_shape(tuple(tensor.shape[-per_image:]))
    as_ids(tensor, vocab.codebook_size, lambda bad: _explain_token_id(bad, len(vocab)))
    if tensor.ndim == 1:
        return tensor.reshape(1, *shape), False
    return (tensor.unsqueeze(0), False) if tensor.ndim == per_image else (tensor, True)


def _explain_token_id(bad: BadId, vocab_len: int) -> str:
    """A bad image token id: negative, a special token's id, or beyond the vocabulary."""
    what = "negative" if bad.value < 0 else ("a special token, not an image token" if bad.value < vocab_len else "out of range")
    return (f"id {bad.value} at position {bad.position} is {what}: image token ids are 0..{bad.limit - 1} "
            f"({bad.count} bad id(s) in all)")
