"""Residual quantization in depth (kind "residual"; RQ-VAE, Lee et al. 2022): `depth` lookups per position in one
shared codebook, each on what the earlier ones left.

With r = f: for d = 0 .. depth-1, id_d = nearest code of r (L2), r -= e[id_d]; f_hat = e[id_0] + ... + e[id_{D-1}]
is what the decoder receives, and decoding sums the same code vectors in the same order. Ids: [B, h, w, depth],
depth 0 the coarsest (layouts.py).
"""

from __future__ import annotations

import torch

from ..config import QuantizerConfig
from .stacked import StackedQuantizer, Steps


class ResidualQuantizer(StackedQuantizer):
    """Kind "residual": D codes per position whose vectors sum to the quantized feature."""

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__(dim, config)
        self.depth = config.depth

    @property
    def step_labels(self) -> list[str]:
        return [f"depth {d}" for d in range(self.depth)]

    def step_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        return list(ids.unbind(dim=-1))

    def _quantize(self, f: torch.Tensor) -> Steps:
        b, c, h, w = f.shape
        rest = f.detach().permute(0, 2, 3, 1).reshape(-1, c).clone()
        total, steps = torch.zeros_like(rest), Steps()
        for _ in range(self.depth):
            rows, ids = self._nearest(rest)
            codes = self.code_vectors(ids)
            total = total + codes
            rest = rest - codes.detach()
            steps.add(total.reshape(b, h, w, c).permute(0, 3, 1, 2), rows, ids)
        return steps

    def _layout_ids(self, step_ids: list[torch.Tensor], f: torch.Tensor) -> torch.Tensor:
        b, _, h, w = f.shape
        return torch.stack([ids.reshape(b, h, w) for ids in step_ids], dim=-1)

    def features_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 4 or ids.shape[-1] != self.depth:
            raise ValueError(f"a residual quantizer of depth {self.depth} takes ids [B, h, w, {self.depth}], got {tuple(ids.shape)}")
        total = torch.zeros(*ids.shape[:-1], self.dim, device=ids.device)
        for d in range(self.depth):
            total = total + self.code_vectors(ids[..., d])
        return total.permute(0, 3, 1, 2)
