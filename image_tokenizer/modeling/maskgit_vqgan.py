"""MaskGIT-VQGAN's pixel decoder, as TiTok's legacy models use it: the decoder's logits over the proxy VQGAN's codes
are softmaxed, mixed into code vectors, and decoded to pixels by MaskGIT's VQGAN decoder (no attention, GroupNorm,
nearest upsampling then a 3x3 conv). Sizes are the config's `ch`, `ch_mult`, `num_res_blocks`, `z_channels`,
`norm_groups` (MaskGIT: 128, (1, 1, 2, 2, 4), 2, 256, 32).
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageTokenizerConfig

EPS = 1e-6


class MaskGitResnetBlock(nn.Module):
    """Two GroupNorm-SiLU-conv steps (no biases). Where the width changes, MaskGIT's block adds the 1x1 shortcut of
    its *output*, not of its input: the released weights were trained that way, so it is kept."""

    def __init__(self, channels_in: int, channels_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels_in, eps=EPS)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, channels_out, eps=EPS)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.nin_shortcut = nn.Conv2d(channels_out, channels_out, 1, bias=False) if channels_in != channels_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(h))


class MaskGitUpBlock(nn.Module):
    """One level: ResNet blocks, then (all but level 0) nearest 2x upsampling and a 3x3 conv."""

    def __init__(self, channels_in: int, channels_out: int, blocks: int, groups: int, upsample: bool):
        super().__init__()
        widths = [channels_in] + [channels_out] * blocks
        self.block = nn.ModuleList(MaskGitResnetBlock(a, b, groups) for a, b in pairwise(widths))
        self.upsample_conv = nn.Conv2d(channels_out, channels_out, 3, padding=1) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class MaskGitPixelDecoder(nn.Module):
    """Logits [B, K, g, g] over the proxy codebook -> pixels [B, 3, g * 2^(levels-1), ...]."""

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        ch, mult, groups = config.ch, config.ch_mult, config.norm_groups
        self.codebook = nn.Parameter(torch.zeros(config.vit.proxy_codebook_size, config.z_channels))
        self.conv_in = nn.Conv2d(config.z_channels, ch * mult[-1], 3, padding=1)
        self.mid = nn.ModuleList(MaskGitResnetBlock(ch * mult[-1], ch * mult[-1], groups)
                                 for _ in range(config.num_res_blocks))
        levels = len(mult)
        self.up = nn.ModuleList(
            MaskGitUpBlock(ch * mult[min(level + 1, levels - 1)], ch * mult[level], config.num_res_blocks, groups,
                           upsample=level != 0)
            for level in range(levels)
        )
        self.norm_out = nn.GroupNorm(groups, ch * mult[0], eps=EPS)
        self.conv_out = nn.Conv2d(ch * mult[0], config.out_channels, 3, padding=1)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        # the expected code vector under softmax(logits), as TiTok's decode mixes them
        h = torch.einsum("nchw,cd->ndhw", logits.softmax(1), self.codebook)
        h = self.conv_in(h)
        for block in self.mid:
            h = block(h)
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))
