"""Pixel arrays and tensors to model input as one batch on the device, without PIL.

A uint8 (or 0..1 float) numpy array or torch tensor is already pixels: it goes to the device as it is,
and is normalised (and, if its size differs from the config's, resized with antialiasing) there. The
values the model sees are those of the PIL path whenever no resize is needed: floats are rounded to the
same 8-bit levels. Inputs this path does not cover (files, PIL images, lists, alpha channels, 16-bit or
boolean arrays, sparse tensors: as_pixel_batch gives None) and resizes with a filter torch lacks
(device_can_prepare is False) take the PIL path; inputs.as_images makes that choice, once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .config import ImageTokenizerConfig
from .image_processing import check_image_size, normalize, resize_plan

_FLOAT_TOLERANCE = 1e-6  # the PIL path's tolerance for floats just outside [0, 1]
_PRECISION_BITS = 22  # Pillow's fixed-point precision for 8-bit resampling (32 - 8 - 2)


def _bicubic(x: float) -> float:
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    return (((x - 5) * x + 8) * x - 4) * a if x < 2.0 else 0.0


def _sinc(x: float) -> float:
    return 1.0 if x == 0.0 else math.sin(math.pi * x) / (math.pi * x)


# Pillow's filters and their supports (Resample.c); NEAREST is not a convolution and takes the PIL path.
_FILTERS: dict[str, tuple[Callable[[float], float], float]] = {
    "bicubic": (_bicubic, 2.0),
    "bilinear": (lambda x: max(0.0, 1.0 - abs(x)), 1.0),
    "box": (lambda x: 1.0 if -0.5 < x <= 0.5 else 0.0, 0.5),
    "lanczos": (lambda x: _sinc(x) * _sinc(x / 3.0) if -3.0 <= x < 3.0 else 0.0, 3.0),
}


def as_pixel_batch(images: Any, device: torch.device) -> tuple[torch.Tensor, bool] | None:
    """An array or tensor of pixels -> (uint8 [B, C, H, W] on device, C 1 or 3, whether it was a batch), or
    None when the input needs the PIL path."""
    if isinstance(images, np.ndarray):
        if images.ndim not in (2, 3, 4) or not (images.dtype == np.uint8 or images.dtype.kind == "f"):
            return None
        array = np.ascontiguousarray(images)
        # np.asarray(pil) is read-only; torch warns about such arrays, and a copy of one image is cheap
        tensor, channels_last = torch.from_numpy(array if array.flags.writeable else array.copy()), True
    elif isinstance(images, torch.Tensor):
        if images.is_meta or images.is_complex() or images.layout != torch.strided or images.ndim not in (2, 3, 4):
            return None
        if images.dtype != torch.uint8 and not images.is_floating_point():
            return None
        tensor, channels_last = images.detach(), False
    else:
        return None
    is_batch = tensor.ndim == 4
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(-1 if channels_last else 0)
    if not is_batch:
        tensor = tensor.unsqueeze(0)
    if channels_last:
        tensor = tensor.permute(0, 3, 1, 2)
    if tensor.shape[1] not in (1, 3) or tensor.numel() == 0:
        return None  # alpha (composited by PIL), a shape the PIL path names in its error, or an empty batch
    pixels = _to_uint8(tensor.to(device, non_blocking=True))
    return None if pixels is None else (pixels, is_batch)


def _to_uint8(tensor: torch.Tensor) -> torch.Tensor | None:
    """uint8 passes; floats in [0, 1] become the PIL path's 8-bit levels (rint(x * 255), in the input's
    precision). Floats out of range or not finite: None, so the PIL path names the bad image."""
    if tensor.dtype == torch.uint8:
        return tensor
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()  # as the PIL path reads half tensors
    checks = torch.stack([tensor.amin(), tensor.amax(), torch.isfinite(tensor).all().to(tensor.dtype)])
    low, high, finite = checks.tolist()  # one sync for all three
    if not finite or low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
        return None
    return torch.round(tensor * 255.0).clamp(0, 255).to(torch.uint8)


def device_can_prepare(pixels: torch.Tensor, config: ImageTokenizerConfig, native_size: bool = False) -> bool:
    """Whether the device can bring this batch to model input: always, unless resizing needs a filter torch
    lacks (nearest), which the PIL path applies instead."""
    same_size = tuple(pixels.shape[2:]) == (config.resolution, config.resolution)
    resizes = not native_size and not same_size and config.preprocessing.resize_mode in ("resize", "resize_center_crop")
    return not resizes or config.preprocessing.resample in _FILTERS


def pixel_batch_to_input(
    pixels: torch.Tensor, config: ImageTokenizerConfig, native_size: bool = False, max_native_pixels: int | None = None
) -> torch.Tensor:
    """uint8 [B, C, H, W] -> normalised float [B, 3, H', W'] at the config's resolution (or the native size),
    applying the config's resize plan on the device (a batch device_can_prepare)."""
    height, width = pixels.shape[2], pixels.shape[3]
    check_image_size(width, height, config, 0, native_size, max_native_pixels)  # a batch's images share one size
    if not native_size and (height, width) != (config.resolution, config.resolution):
        pixels = _resize_and_crop(pixels, config)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return normalize(pixels, config.preprocessing)


def _resize_and_crop(pixels: torch.Tensor, config: ImageTokenizerConfig) -> torch.Tensor:
    """The PIL path's resize plan on the device, with Pillow's own resampling (below), then the same crop."""
    size, (left, top, right, bottom) = resize_plan(pixels.shape[3], pixels.shape[2], config.resolution, config.preprocessing)
    if size is not None:
        pixels = pil_resize(pixels, (size[1], size[0]), config.preprocessing.resample)
    return pixels[:, :, top:bottom, left:right]


def pil_resize(pixels: torch.Tensor, size: tuple[int, int], resample: str) -> torch.Tensor:
    """Pillow's 8-bit resize, bit for bit, as two matrix products on the device: the horizontal pass, rounded
    to uint8 as Pillow does, then the vertical one. Coefficients are Pillow's fixed-point integers, and float64
    holds their sums exactly. (torch's antialiased bicubic uses another kernel: 3 % of pixels differ, by up to 12.)"""
    out = pixels
    if pixels.shape[3] != size[1]:
        weights = _pil_weights(pixels.shape[3], size[1], resample, str(pixels.device))
        out = _fixed_point_round(out.double() @ weights.T)
    if pixels.shape[2] != size[0]:
        weights = _pil_weights(pixels.shape[2], size[0], resample, str(pixels.device))
        out = _fixed_point_round(weights @ out.double())
    return out


def _fixed_point_round(sums: torch.Tensor) -> torch.Tensor:
    return torch.floor((sums + 2 ** (_PRECISION_BITS - 1)) / 2**_PRECISION_BITS).clamp(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=64)
def _pil_weights(in_size: int, out_size: int, resample: str, device: str) -> torch.Tensor:
    """[out_size, in_size] Pillow resampling coefficients (precompute_coeffs and normalize_coeffs_8bpc)."""
    kernel, support = _FILTERS[resample]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support *= filterscale
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        taps = [kernel((x - center + 0.5) / filterscale) for x in range(xmin, xmax)]
        total = sum(taps)
        for x, tap in zip(range(xmin, xmax), taps):
            value = (tap / total if total != 0.0 else tap) * (1 << _PRECISION_BITS)
            weights[xx, x] = math.trunc(value - 0.5 if value < 0 else value + 0.5)
    return torch.from_numpy(weights).to(device)
