"""VQGAN decoder: latent [B, z_channels, h, w] -> image [B, C, h*f, w*f]."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ImageTokenizerConfig
from .blocks import AttnBlock, MidBlock, ResnetBlock, Upsample, group_norm, run_stage_blocks, silu


class Decoder(nn.Module):
    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        groups = config.norm_groups
        widths = config.decoder_widths
        width = widths[-1]
        self.conv_in = nn.Conv2d(config.z_channels, width, 3, padding=1)
        self.mid = MidBlock(width, groups, config.dropout, config.use_mid_attention)
        # Built from the lowest resolution up but indexed like the encoder (up[0] is full resolution), as in taming.
        stages: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            resolution = config.decoder_level_resolutions[level]
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                stage.block.append(ResnetBlock(width, widths[level], groups, config.dropout))
                width = widths[level]
                if resolution in config.attn_resolutions:
                    stage.attn.append(AttnBlock(width, groups))
            if level >= len(widths) - config.halving_levels:
                stage.upsample = Upsample(width)
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)
        self.norm_out = group_norm(width, groups)
        self.conv_out = nn.Conv2d(width, config.out_channels * config.patch_size**2, 3, padding=1)

    @property
    def last_layer(self) -> nn.Parameter:
        """Weight of the final conv: where the adaptive GAN weight compares gradient norms."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = run_stage_blocks(stage, h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(silu(self.norm_out(h)))
