"""Finite scalar quantization (Mentzer et al. 2023): each channel is bounded and rounded to one of L_i levels.

The arithmetic follows vector-quantize-pytorch's `FSQ` (and NVIDIA Cosmos, which adapts it) operation for
operation, so codes and ids are bit-identical: z is bounded by tanh(z + shift) * half_l - offset, where
half_l = (L - 1)(1 + 1e-3)/2 and even L are shifted by 1/2 so that L values round out; the code of digit k is
(k - L//2) / (L//2) (even L: -1 .. 1 - 2/L). Channel 0 is the least-significant digit of an id.
"""

from __future__ import annotations

import math

import torch

from ..config import QuantizerConfig
from .implicit import ImplicitQuantizer, straight_through

BOUND_EPS = 1e-3  # vector-quantize-pytorch's FSQ.bound default


class FiniteScalarQuantizer(ImplicitQuantizer):
    """Kind "fsq": K = prod(levels) codes of dimension len(levels), no codebook and no auxiliary loss."""

    def __init__(self, dim: int, config: QuantizerConfig):
        levels = list(config.levels)
        radix = [math.prod(levels[:i]) for i in range(len(levels))]
        super().__init__(dim, config, levels, radix)

    def quantize_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = self.levels.to(torch.int32)  # the reference's dtype, for the same float arithmetic
        half_l = (levels - 1) * (1 + BOUND_EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).to(rows.device)
        shift = torch.atanh(offset / half_l)
        bounded = torch.tanh(rows + shift) * half_l - offset
        rounded = bounded.round()
        half_width = levels // 2
        codes = straight_through(bounded, rounded) / half_width
        return codes, rounded.long() + half_width.long()

    def codes_from_digits(self, digits: torch.Tensor) -> torch.Tensor:
        half_width = self.levels // 2
        return (digits - half_width).float() / half_width.float()
