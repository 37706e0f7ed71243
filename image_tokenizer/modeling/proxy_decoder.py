"""A 2D tokenizer's own decoder as the pixel decoder of a legacy 1D tokenizer (vit.pixel_decoder "vqgan"): the ViT
decoder's logits over the proxy's codes are softmaxed and mixed into code vectors (the proxy's codes as its
decoder receives them), then go through the proxy's post_quant_conv (when vit.proxy_codebook_dim is set) and its
VQGAN `Decoder`, built from the config's own ch, ch_mult, num_res_blocks, attention and z_channels fields.
A 1D tokenizer distilled from an ImageTokenizer (training/distil_1d.py) decodes this way.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ImageTokenizerConfig
from .decoder import Decoder


class ProxyPixelDecoder(nn.Module):
    """Logits [B, K, g, g] over the proxy codebook -> pixels [B, 3, g * 2^halvings, ...]."""

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        vit = config.vit
        width = config.z_channels if vit.proxy_codebook_dim is None else vit.proxy_codebook_dim
        self.codebook = nn.Parameter(torch.zeros(vit.proxy_codebook_size, width))
        self.post_quant_conv = None if vit.proxy_codebook_dim is None else nn.Conv2d(width, config.z_channels, 1)
        self.decoder = Decoder(config)

    def soft_codes(self, logits: torch.Tensor) -> torch.Tensor:
        """The expected code vector under softmax(logits) at each position, [B, width, g, g] (fp32 mixing)."""
        probs = logits.float().softmax(1)
        return torch.einsum("nchw,cd->ndhw", probs, self.codebook.float()).to(logits.dtype)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        h = self.soft_codes(logits)
        if self.post_quant_conv is not None:
            h = self.post_quant_conv(h)
        return self.decoder(h)
