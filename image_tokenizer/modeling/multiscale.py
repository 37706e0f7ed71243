"""Multi-scale residual quantization (kind "multiscale"; VAR, Tian et al. 2024): one lookup per scale, coarse to fine,
in one shared codebook.

With r = f and f_hat = 0, for each scale side p (the last is the grid side): area-downsample r to p x p (the last
scale is not resized), take each position's nearest code (L2, or cosine: the largest dot product of l2-normalised
vectors), bicubic-upsample the code vectors to the full grid, pass them through phi, then f_hat += phi(.) and
r -= phi(.). phi(h) = (1 - rho) h + rho conv3x3(h), rho = phi_ratio; `phi_convs` convolutions are shared by the
scales as VAR shares them (`phi_schedule`). Decoding computes the same sum from the ids. Ids: [B, N], the scales
concatenated coarse to fine, row-major inside each (layouts.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import QuantizerConfig
from ..layouts import IdLayout
from .stacked import StackedQuantizer, Steps


def phi_schedule(scales: int, convs: int) -> list[int]:
    """Which phi convolution each of `scales` scales uses (VAR's sharing): with n convolutions, conv j sits at tick j
    of linspace(1/(3n), 1 - 1/(3n), n) when n = 4, else of linspace(1/(2n), 1 - 1/(2n), n); scale k takes the conv
    whose tick is nearest to k / (scales - 1), the first one on a tie. No convolutions: an empty schedule."""
    if convs == 0:
        return []
    margin = 1 / 3 / convs if convs == 4 else 1 / 2 / convs
    ticks = np.linspace(margin, 1 - margin, convs)
    return [int(np.argmin(np.abs(ticks - k / (scales - 1)))) for k in range(scales)]


class MultiScaleQuantizer(StackedQuantizer):
    """Kind "multiscale": `scales` lookups per image in one codebook, each refining what the coarser ones left."""

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__(dim, config)
        self.scales = tuple(config.scales)
        side = self.scales[-1]
        self.layout = IdLayout("multiscale", (side, side), scales=self.scales)
        d = config.codebook_dim
        self.phi = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in range(config.phi_convs))
        self.phi_of_scale = phi_schedule(len(self.scales), config.phi_convs)

    @property
    def step_labels(self) -> list[str]:
        return [f"scale {p}x{p}" for p in self.scales]

    def step_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        return self.layout.split_scales(ids)

    def _phi(self, scale: int, h: torch.Tensor) -> torch.Tensor:
        if not self.phi_of_scale:
            return h
        conv = self.phi[self.phi_of_scale[scale]]
        rho = self.config.phi_ratio
        return h.mul(1 - rho) + F.conv2d(h, conv.weight.float(), conv.bias.float(), padding=1).mul(rho)

    def _contribution(self, scale: int, grid_ids: torch.Tensor) -> torch.Tensor:
        """One scale's ids [B, p, p] -> phi(its code vectors upsampled to the grid) [B, C, H, W]."""
        vectors = self.code_vectors(grid_ids).permute(0, 3, 1, 2)
        side = self.scales[-1]
        if grid_ids.shape[-1] != side:
            vectors = F.interpolate(vectors, size=(side, side), mode="bicubic")
        return self._phi(scale, vectors.contiguous())

    def _quantize(self, f: torch.Tensor) -> Steps:
        b, c, h, w = f.shape
        if (h, w) != (self.scales[-1],) * 2:
            raise ValueError(f"a multiscale quantizer with scales {list(self.scales)} takes a {self.scales[-1]}x"
                             f"{self.scales[-1]} feature map, got {h}x{w}")
        rest, f_hat, steps = f.detach().clone(), torch.zeros_like(f), Steps()
        for scale, side in enumerate(self.scales):
            small = rest if side == h else F.interpolate(rest, size=(side, side), mode="area")
            rows, ids = self._nearest(small.permute(0, 2, 3, 1).reshape(-1, c))
            contribution = self._contribution(scale, ids.reshape(b, side, side))
            f_hat = f_hat + contribution
            rest = rest - contribution.detach()
            steps.add(f_hat, rows, ids)
        return steps

    def _layout_ids(self, step_ids: list[torch.Tensor], f: torch.Tensor) -> torch.Tensor:
        return torch.cat([ids.reshape(f.shape[0], -1) for ids in step_ids], dim=1)

    def features_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        grids = self.layout.split_scales(ids)
        side = self.scales[-1]
        f_hat = torch.zeros(ids.shape[0], self.dim, side, side, device=ids.device)
        for scale, grid in enumerate(grids):
            f_hat = f_hat + self._contribution(scale, grid)
        return f_hat
