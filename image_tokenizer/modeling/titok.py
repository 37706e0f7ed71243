"""TiTok's ViT encoder and decoder (architecture "titok", config.vit): an image as N learned latent tokens.

Encoder: 16x16 patches (a strided conv), [CLS] + patches + N learned latents, each group with its own position
embedding, layer norm, pre-LN transformer blocks (torch's nn.MultiheadAttention, as TiTok's), ln_post on the
latents and a 1x1 conv to the codebook dimension: [B, D, 1, N] for the quantizer, so ids come out [B, 1, N].
Decoder: the quantized latents projected to its width, after a mask token for every patch and [CLS], through
its blocks; the patch tokens then predict pixels (a 1x1 conv to p*p*3 values per patch and a 3x3 conv), or in
legacy models logits over a proxy's codes, decoded by its pixel decoder: MaskGIT-VQGAN's (maskgit_vqgan.py, the
released models) or one of our VQGAN decoders (proxy_decoder.py, vit.pixel_decoder "vqgan").
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..config import ImageTokenizerConfig
from .maskgit_vqgan import MaskGitPixelDecoder
from .proxy_decoder import ProxyPixelDecoder


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); sequences are [L, B, width]."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ViTBody(nn.Module):
    """What encoder and decoder share: [CLS] and patch position embeddings, latent position embeddings, ln_pre,
    the blocks and ln_post."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, patches: int, latents: int):
        super().__init__()
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(patches + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(latents, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)

    def with_class_token(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, P, width] -> [CLS] + patches with their position embeddings, [B, P + 1, width]."""
        cls = self.class_embedding.to(patches.dtype).unsqueeze(0).expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.positional_embedding.to(patches.dtype)

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        """ln_pre, then the blocks over [B, L, width] (run as [L, B, width])."""
        x = self.ln_pre(x).permute(1, 0, 2)
        for block in self.transformer:
            x = block(x)
        return x.permute(1, 0, 2)


class ViTEncoder(ViTBody):
    """Pixels [B, 3, H, W] -> latent features [B, codebook_dim, 1, N]."""

    def __init__(self, config: ImageTokenizerConfig):
        vit = config.vit
        self.patches = (config.resolution // vit.encoder_patch_size) ** 2
        self.legacy = vit.legacy
        super().__init__(vit.encoder_width, vit.encoder_layers, vit.encoder_heads, vit.mlp_ratio, self.patches,
                         vit.num_latent_tokens)
        width = vit.encoder_width
        self.patch_embed = nn.Conv2d(config.in_channels, width, vit.encoder_patch_size, stride=vit.encoder_patch_size)
        self.latent_tokens = nn.Parameter(width**-0.5 * torch.randn(vit.num_latent_tokens, width))
        self.conv_out = nn.Conv2d(width, config.quantizer.codebook_dim, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        x = self.patch_embed(pixels)
        x = self.with_class_token(x.reshape(b, x.shape[1], -1).permute(0, 2, 1))
        latents = self.latent_tokens.to(x.dtype) + self.latent_token_positional_embedding.to(x.dtype)
        x = self.blocks(torch.cat([x, latents.unsqueeze(0).expand(b, -1, -1)], dim=1))
        latents = self.ln_post(x[:, 1 + self.patches :])  # [B, N, width]
        n, width = latents.shape[1:]
        if self.legacy:  # the released checkpoints' order: the [B, N, width] values read as [B, width, N]
            latents = latents.reshape(b, width, n, 1)
        else:
            latents = latents.reshape(b, n, width, 1).permute(0, 2, 1, 3)
        return self.conv_out(latents).reshape(b, -1, 1, n)


class PatchesToPixels(nn.Module):
    """[B, p*p*3, h, w] (channel = (row in patch, column in patch, colour)) -> pixels [B, 3, h*p, w*p]."""

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.patch_size
        return x.reshape(b, p, p, 3, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, 3, h * p, w * p)


class ViTDecoder(ViTBody):
    """Quantized latents [B, codebook_dim, 1, N] -> normalised pixels [B, 3, H, W]."""

    def __init__(self, config: ImageTokenizerConfig):
        vit = config.vit
        self.side = config.resolution // vit.decoder_patch_size
        super().__init__(vit.decoder_width, vit.decoder_layers, vit.decoder_heads, vit.mlp_ratio, self.side**2,
                         vit.num_latent_tokens)
        width, p = vit.decoder_width, vit.decoder_patch_size
        self.decoder_embed = nn.Linear(config.quantizer.codebook_dim, width)
        self.mask_token = nn.Parameter(width**-0.5 * torch.randn(1, 1, width))
        if vit.legacy:  # logits over the proxy codes, then the proxy's pixel decoder
            self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1), nn.Tanh(),
                                     nn.Conv2d(2 * width, vit.proxy_codebook_size, 1))
            self.conv_out = None
            pixel_decoder = MaskGitPixelDecoder if vit.pixel_decoder == "maskgit" else ProxyPixelDecoder
            self.pixel_decoder = pixel_decoder(config)
        else:
            self.ffn = nn.Sequential(nn.Conv2d(width, p * p * 3, 1), PatchesToPixels(p))
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)
            self.pixel_decoder = None

    def patch_outputs(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, codebook_dim, 1, N] -> what the patches predict: legacy, logits over the proxy's
        codes [B, K, side, side] (what distillation's stage 1 trains); else pixels before conv_out."""
        b, c, h, n = quantized.shape
        x = self.decoder_embed(quantized.reshape(b, c * h, n).permute(0, 2, 1))
        masks = self.with_class_token(self.mask_token.to(x.dtype).expand(b, self.side**2, -1))
        x = self.blocks(torch.cat([masks, x + self.latent_token_positional_embedding[:n]], dim=1))
        x = self.ln_post(x[:, 1 : 1 + self.side**2])
        return self.ffn(x.permute(0, 2, 1).reshape(b, -1, self.side, self.side).contiguous())

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        x = self.patch_outputs(quantized)
        if self.pixel_decoder is not None:
            return self.pixel_decoder(x)
        return self.conv_out(x)
