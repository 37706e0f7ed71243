"""Open-MAGVIT2's encoder and decoder (TencentARC, `improved_model.py`): no attention, bias-free ResNet blocks,
stride-2 convs down, a 3x3 conv to 4x the channels and depth-to-space up, and before each decoder level an
adaptive group norm whose scale and shift come from the per-channel std and mean of the quantized latent.

Parameter names follow the published checkpoints (`mid_block`, `adaptive`, `upsample.conv1`), so they map one
to one. The std is torch's default (unbiased) variance plus eps, as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageTokenizerConfig
from .blocks import ResnetBlock, group_norm, memory_format_of, silu

NORM_EPS = 1e-6


def depth_to_space(x: torch.Tensor, block: int = 2) -> torch.Tensor:
    """[B, C*block^2, H, W] -> [B, C, H*block, W*block] in DCR order (channel index = (row*block + col)*C + c),
    Open-MAGVIT2's order; torch's pixel_shuffle uses CRD order, which would scramble the published weights."""
    b, c, h, w = x.shape
    out = x.reshape(b, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
    return out.reshape(b, c // block**2, h * block, w * block).contiguous(memory_format=memory_format_of(x))


class Upsampler(nn.Module):
    """3x3 conv to four times the channels, then depth-to-space: twice the side, the same width."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels * 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv1(x))


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, then scale = gamma(std of the latent), shift = beta(mean of the latent), per image
    and channel: the decoder's features are restyled by global statistics of the quantized codes."""

    def __init__(self, z_channels: int, channels: int, groups: int):
        super().__init__()
        self.groups = groups
        self.gamma = nn.Linear(z_channels, channels)
        self.beta = nn.Linear(z_channels, channels)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        flat = latent.flatten(2)
        scale = self.gamma((flat.var(dim=-1) + NORM_EPS).sqrt())
        shift = self.beta(flat.mean(dim=-1))
        normed = F.group_norm(x, self.groups, eps=NORM_EPS)
        return torch.addcmul(shift[:, :, None, None], normed, scale[:, :, None, None])


class Magvit2Encoder(nn.Module):
    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        groups, blocks = config.norm_groups, config.num_res_blocks
        widths = [config.ch * m for m in config.ch_mult]
        self.conv_in = nn.Conv2d(config.in_channels, config.ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        width = config.ch
        for level, out_width in enumerate(widths):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(blocks):
                stage.block.append(ResnetBlock(width, out_width, groups, bias=False))
                width = out_width
            if level != len(widths) - 1:
                stage.downsample = nn.Conv2d(width, width, 3, stride=2, padding=1)
            self.down.append(stage)
        self.mid_block = nn.ModuleList(ResnetBlock(width, width, groups, bias=False) for _ in range(blocks))
        self.norm_out = group_norm(width, groups)
        self.conv_out = nn.Conv2d(width, config.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        for block in self.mid_block:
            h = block(h)
        return self.conv_out(silu(self.norm_out(h)))


class Magvit2Decoder(nn.Module):
    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        groups, blocks = config.norm_groups, config.num_res_blocks
        widths = config.decoder_widths
        width = widths[-1]
        self.conv_in = nn.Conv2d(config.z_channels, width, 3, padding=1)
        self.mid_block = nn.ModuleList(ResnetBlock(width, width, groups, bias=False) for _ in range(blocks))
        # Built from the lowest resolution up but indexed like the encoder (up[0] is full resolution).
        stages: list[nn.Module] = []
        adaptive: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            adaptive.insert(0, AdaptiveGroupNorm(config.z_channels, width, groups))
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(blocks):
                stage.block.append(ResnetBlock(width, widths[level], groups, bias=False))
                width = widths[level]
            if level != 0:
                stage.upsample = Upsampler(width)
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)
        self.adaptive = nn.ModuleList(adaptive)
        self.norm_out = group_norm(width, groups)
        self.conv_out = nn.Conv2d(width, config.out_channels, 3, padding=1)

    @property
    def last_layer(self) -> nn.Parameter:
        """Weight of the final conv: where the adaptive GAN weight compares gradient norms."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid_block:
            h = block(h)
        for level in reversed(range(len(self.up))):
            h = self.adaptive[level](h, z)
            stage = self.up[level]
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(silu(self.norm_out(h)))
