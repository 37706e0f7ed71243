"""Emu3's vision tokenizer (BAAI; transformers' Emu3VQVAE) on single images: MoVQ encoder and decoder.

Emu3 is a video tokenizer. transformers' `Emu3VQVAE.encode` turns an image into a video of
`temporal_downsample_factor` identical frames; the 2D encoder gives each frame the same latent, so it runs once
here and only its small latent is repeated through the temporal convolutions, which leave one frame.
`Emu3VQVAE.decode` of an image returns frame 0 of the decoded video. Every temporal layer is causal (two frames of
zero padding in front), so frame 0 depends on frame 0 alone: the temporal upsampling reduces to its convolution on
that one frame, and the 2D decoder runs once instead of once per frame. The decoder's normalisations are spatial
norms, conditioned on the quantized codes, which pass through the same temporal layers as the latent.
Parameter names follow transformers' Emu3VQVAE, so its weights map onto these modules key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageTokenizerConfig
from .blocks import Downsample, ResnetBlock, Upsample, add_residual, group_norm, silu


class Emu3Attention(nn.Module):
    """Multi-head self-attention over all positions with linear projections; norm and residual stay outside."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(channels, channels) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.reshape(b, c, h * w).transpose(1, 2)
        q, k, v = (proj(tokens).reshape(b, h * w, self.heads, -1).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return self.out_proj(out).transpose(1, 2).reshape(b, c, h, w)


class SpatialNorm(nn.Module):
    """GroupNorm whose scale and shift come from the quantized codes (nearest-upsampled to the feature map)."""

    def __init__(self, codes_channels: int, channels: int, groups: int):
        super().__init__()
        self.norm_layer = group_norm(channels, groups)
        self.conv_y = nn.Conv2d(codes_channels, channels, 1)
        self.conv_b = nn.Conv2d(codes_channels, channels, 1)

    def forward(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        codes = F.interpolate(codes, size=x.shape[-2:], mode="nearest")
        return self.norm_layer(x) * self.conv_y(codes) + self.conv_b(codes)


class SpatialResnetBlock(nn.Module):
    """The ResNet block with spatial norms (the decoder's)."""

    def __init__(self, in_channels: int, out_channels: int, codes_channels: int, groups: int):
        super().__init__()
        self.norm1 = SpatialNorm(codes_channels, in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = SpatialNorm(codes_channels, out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        h = self.conv1(silu(self.norm1(x, codes)))
        h = self.conv2(silu(self.norm2(h, codes)))
        return add_residual(x if self.nin_shortcut is None else self.nin_shortcut(x), h)


class CausalConv3d(nn.Module):
    """Emu3's Conv3d: 'same' spatial padding, and two zero frames in front whatever the temporal kernel."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        spatial = [k - s for k, s in zip(kernel[1:], stride[1:])]
        self.padding = tuple(p for size in reversed(spatial) for p in (size // 2 + size % 2, size // 2)) + (2, 0)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class FrozenBatchNorm(nn.Module):
    """BatchNorm with its running statistics, as in evaluation; without the training-only batch counter."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class TemporalResnetBlock(nn.Module):
    """BatchNorm (running statistics) -> SiLU -> causal 3x3x3 conv, twice, with a residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = FrozenBatchNorm(channels)
        self.conv1 = CausalConv3d(channels, channels, (3, 3, 3), (1, 1, 1))
        self.norm2 = FrozenBatchNorm(channels)
        self.conv2 = CausalConv3d(channels, channels, (3, 3, 3), (1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(silu(self.norm1(x)))
        return x + self.conv2(silu(self.norm2(h)))


class TemporalConv(nn.Module):
    """Holds one causal temporal conv (Emu3's TemporalDownsample / TemporalUpsample keep theirs under `.conv`)."""

    def __init__(self, channels: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, kernel, stride)


def temporal_levels(config: ImageTokenizerConfig) -> int:
    return config.temporal_downsample_factor.bit_length() - 1


def attend(h: torch.Tensor, norm: nn.Module, attention: Emu3Attention, *codes: torch.Tensor) -> torch.Tensor:
    """h + attention(norm(h)), with the codes passed to a spatial norm."""
    return h + attention(norm(h, *codes))


class Emu3Encoder(nn.Module):
    """Image [B, 3, H, W] -> latent [B, z_channels, H/f, W/f], as Emu3VQVAE's encoder sees an image."""

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        groups, heads, z = config.norm_groups, config.attention_heads, config.z_channels
        widths = [config.ch * m for m in config.ch_mult]
        self.conv_in = nn.Conv2d(config.in_channels, config.ch, 3, padding=1)
        self.down_block = nn.Module()
        self.down_block.down = nn.ModuleList()
        in_width = config.ch
        for level, (width, side) in enumerate(zip(widths, config.level_resolutions)):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn, stage.attn_norms = nn.ModuleList(), nn.ModuleList()
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock(in_width, width, groups))
                in_width = width
                if side in config.attn_resolutions:
                    stage.attn.append(Emu3Attention(width, heads))
                    stage.attn_norms.append(group_norm(width, groups))
            if level < config.halving_levels:
                stage.downsample = Downsample(width)
            self.down_block.down.append(stage)
        self.middle_block = MiddleBlock(in_width, groups, heads)
        self.norm_out = group_norm(in_width, groups)
        self.conv_out = nn.Conv2d(in_width, z, 3, padding=1)
        self.time_conv = nn.ModuleList(TemporalConv(z, (4, 3, 3), (2, 1, 1)) for _ in range(temporal_levels(config)))
        self.time_res_stack = nn.ModuleList(TemporalResnetBlock(z) for _ in range(config.num_res_blocks))
        self.frames = config.temporal_downsample_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down_block.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = attend(h, stage.attn_norms[i], stage.attn[i])
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.conv_out(silu(self.norm_out(self.middle_block(h))))
        video = h.unsqueeze(2).expand(-1, -1, self.frames, -1, -1)  # the image as identical frames
        for layer in self.time_conv:
            video = F.silu(layer.conv(video))
        for layer in self.time_res_stack:
            video = layer(video)
        return video[:, :, 0]  # the temporal convs leave one frame


class MiddleBlock(nn.Module):
    """ResNet block, attention (after its own norm), ResNet block; spatial norms when codes_channels is given."""

    def __init__(self, channels: int, groups: int, heads: int, codes_channels: int | None = None):
        super().__init__()
        if codes_channels is None:
            self.block_1, self.block_2 = ResnetBlock(channels, channels, groups), ResnetBlock(channels, channels, groups)
            self.attn_norm = group_norm(channels, groups)
        else:
            self.block_1, self.block_2 = (SpatialResnetBlock(channels, channels, codes_channels, groups) for _ in range(2))
            self.attn_norm = SpatialNorm(codes_channels, channels, groups)
        self.attn_1 = Emu3Attention(channels, heads)

    def forward(self, h: torch.Tensor, *codes: torch.Tensor) -> torch.Tensor:
        h = attend(self.block_1(h, *codes), self.attn_norm, self.attn_1, *codes)
        return self.block_2(h, *codes)


class Emu3Decoder(nn.Module):
    """Latent and codes [B, C, h, w] -> frame 0 of Emu3VQVAE's decoded video [B, 3, h*f, w*f]."""

    needs_codes = True  # VQModel passes the quantized codes beside the post_quant_conv output

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        groups, heads, z, e = config.norm_groups, config.attention_heads, config.z_channels, config.quantizer_input_dim
        widths = config.decoder_widths
        self.time_res_stack = nn.ModuleList(TemporalResnetBlock(z) for _ in range(config.num_res_blocks))
        self.time_conv = nn.ModuleList(TemporalConv(z, (3, 3, 3), (1, 1, 1)) for _ in range(temporal_levels(config)))
        self.conv_in = nn.Conv2d(z, widths[-1], 3, padding=1)
        self.middle_block = MiddleBlock(widths[-1], groups, heads, codes_channels=e)
        self.up_block = nn.Module()
        self.up_block.up = nn.ModuleList(self._level(config, level) for level in range(len(widths)))
        self.norm_out = SpatialNorm(e, widths[0], groups)
        self.conv_out = nn.Conv2d(widths[0], config.out_channels, 3, padding=1)

    @staticmethod
    def _level(config: ImageTokenizerConfig, level: int) -> nn.Module:
        widths, e = config.decoder_widths, config.quantizer_input_dim
        width_in = widths[min(level + 1, len(widths) - 1)]
        stage = nn.Module()
        stage.block, stage.attn, stage.attn_norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for _ in range(config.num_res_blocks + 1):
            stage.block.append(SpatialResnetBlock(width_in, widths[level], e, config.norm_groups))
            width_in = widths[level]
            if config.decoder_level_resolutions[level] in config.attn_resolutions:
                stage.attn.append(Emu3Attention(widths[level], config.attention_heads))
                stage.attn_norms.append(SpatialNorm(e, widths[level], config.norm_groups))
        if level >= len(widths) - config.halving_levels:
            stage.upsample = Upsample(widths[level])
        return stage

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        """Frame 0 of the temporal layers' output for a one-frame input (each upsampling keeps frame 0 alone)."""
        video = x.unsqueeze(2)
        for layer in self.time_res_stack:
            video = layer(video)
        for layer in self.time_conv:
            video = F.silu(layer.conv(video))
        return video[:, :, 0]

    def forward(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        both = self.temporal(torch.cat([z, codes.to(z.dtype)]))
        h, codes = both.chunk(2)
        h = self.middle_block(self.conv_in(h), codes)
        for stage in reversed(self.up_block.up):
            for i, block in enumerate(stage.block):
                h = block(h, codes)
                if len(stage.attn):
                    h = attend(h, stage.attn_norms[i], stage.attn[i], codes)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(silu(self.norm_out(h, codes)))
