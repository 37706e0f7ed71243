"""VQGAN encoder: image [B, C, H, W] -> latent [B, z_channels, H/f, W/f]."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ImageTokenizerConfig
from .blocks import AttnBlock, Downsample, MidBlock, ResnetBlock, group_norm, run_stage_blocks, silu


class Encoder(nn.Module):
    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        groups = config.norm_groups
        self.conv_in = nn.Conv2d(config.in_channels * config.patch_size**2, config.ch, 3, padding=1)
        self.down = nn.ModuleList()
        widths = [config.ch * m for m in config.ch_mult]
        in_width = config.ch
        for level, (width, resolution) in enumerate(zip(widths, config.level_resolutions)):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock(in_width, width, groups, config.dropout))
                if resolution in config.attn_resolutions:
                    stage.attn.append(AttnBlock(width, groups))
                in_width = width
            if level < config.halving_levels:
                stage.downsample = Downsample(width)
            self.down.append(stage)
        self.mid = MidBlock(in_width, groups, config.dropout, config.use_mid_attention)
        self.norm_out = group_norm(in_width, groups)
        self.conv_out = nn.Conv2d(in_width, config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = run_stage_blocks(stage, h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(silu(self.norm_out(h)))
