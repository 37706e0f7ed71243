"""Cosmos discrete image tokenizer (NVIDIA): the VQGAN encoder and decoder between Haar wavelet patching and its inverse.

The encoder first applies log2(patch_size) Haar wavelet steps, each turning [B, C, H, W] into
[B, 4C, H/2, W/2] (LL, LH, HL, HH sub-bands, each scaled by 1/2); the decoder ends with the inverse steps. The same
convolutions as Cosmos-Tokenizer's Patcher / UnPatcher are used, so the sub-bands are the same floats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ImageTokenizerConfig
from .decoder import Decoder
from .encoder import Encoder

HAAR = 0.7071067811865476  # 1 / sqrt(2)


def _haar_filters(channels: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel low-pass [h, h] and high-pass [h, -h] filters, [channels, 1, 2]."""
    low = torch.tensor([HAAR, HAAR], device=like.device).to(like.dtype).reshape(1, 1, 2).repeat(channels, 1, 1)
    high = torch.tensor([HAAR, -HAAR], device=like.device).to(like.dtype).reshape(1, 1, 2).repeat(channels, 1, 1)
    return low, high


def _haar_step(x: torch.Tensor) -> torch.Tensor:
    channels = x.shape[1]
    low, high = _haar_filters(channels, x)
    x = F.pad(x, (0, 1, 0, 1), mode="reflect")  # never read for even sizes; kept as in Cosmos
    rows = [F.conv2d(x, f.unsqueeze(2), groups=channels, stride=(1, 2)) for f in (low, high)]
    bands = [F.conv2d(r, f.unsqueeze(3), groups=channels, stride=(2, 1)) for r in rows for f in (low, high)]
    return torch.cat(bands, dim=1) / 2


def _inverse_haar_step(x: torch.Tensor) -> torch.Tensor:
    channels = x.shape[1] // 4
    low, high = _haar_filters(channels, x)
    ll, lh, hl, hh = torch.chunk(x, 4, dim=1)

    def up(a: torch.Tensor, b: torch.Tensor, axis: int) -> torch.Tensor:
        stride = (2, 1) if axis == 3 else (1, 2)
        return (F.conv_transpose2d(a, low.unsqueeze(axis), groups=channels, stride=stride)
                + F.conv_transpose2d(b, high.unsqueeze(axis), groups=channels, stride=stride))

    return up(up(ll, lh, 3), up(hl, hh, 3), 2) * 2


def wavelet_patch(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C * patch_size**2, H / patch_size, W / patch_size] by repeated Haar steps."""
    for _ in range(patch_size.bit_length() - 1):
        x = _haar_step(x)
    return x


def wavelet_unpatch(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The inverse of wavelet_patch."""
    for _ in range(patch_size.bit_length() - 1):
        x = _inverse_haar_step(x)
    return x


class CosmosEncoder(Encoder):
    """Haar wavelet patching, then the VQGAN encoder (whose conv_in takes 3 * patch_size**2 channels)."""

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__(config)
        self.patch_size = config.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(wavelet_patch(x, self.patch_size))


class CosmosDecoder(Decoder):
    """The VQGAN decoder (whose conv_out gives 3 * patch_size**2 channels), then the inverse wavelet patching."""

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__(config)
        self.patch_size = config.patch_size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return wavelet_unpatch(super().forward(z), self.patch_size)
