"""Building blocks shared by the VQGAN encoder and decoder (ResNet block, attention, resampling).

Parameter names follow taming-transformers so that published checkpoints map onto ours key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU in place where no gradient needs the input (inference): at 256x256 each activation is a fresh 134 MB
    allocation otherwise, whose page faults cost more on a CPU than the arithmetic (benchmarks/results/op_profile_cpu.md)."""
    return F.silu(x, inplace=not x.requires_grad)


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def channels_last(model: nn.Module) -> nn.Module:
    """The model with its 4-D weights in channels_last (5-D ones, such as Emu3's temporal convs, stay as they are)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.ndim == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model


def add_residual(shortcut: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """shortcut + h, written into h (a layer's fresh output) where no gradient needs it, for the same reason."""
    return shortcut + h if h.requires_grad else h.add_(shortcut)


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> 3x3 conv, twice, with a 1x1 shortcut when the width changes (Open-MAGVIT2's convs
    have no bias: bias=False)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=bias) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One statement per layer: an activation is freed as soon as the next exists, so at most three live at once.
        h = self.conv1(silu(self.norm1(x)))
        h = self.norm2(h)
        h = self.conv2(self.dropout(silu(h)))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return add_residual(shortcut, h)


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all positions, with a residual connection."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        q, k, v = (layer(normed).reshape(b, 1, c, h * w).transpose(-1, -2) for layer in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # [b, 1, hw, c]
        out = out.transpose(-1, -2).reshape(b, c, h, w)  # a channels_last view: kept so when x is, else copied to NCHW
        return add_residual(x, self.proj_out(out.contiguous(memory_format=memory_format_of(x))))


class Downsample(nn.Module):
    """Stride-2 3x3 conv with (0, 1, 0, 1) padding, halving each side exactly."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """ResNet block, optional attention, ResNet block: the bottleneck of both encoder and decoder."""

    def __init__(self, channels: int, groups: int, dropout: float, use_attention: bool):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, dropout)
        self.attn_1 = AttnBlock(channels, groups) if use_attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, groups, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def run_stage_blocks(stage: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """ResNet blocks of one resolution level, each followed by its attention block when the level has them."""
    for i, block in enumerate(stage.block):
        h = block(h)
        if len(stage.attn):
            h = stage.attn[i](h)
    return h
