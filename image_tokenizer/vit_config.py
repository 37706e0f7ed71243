"""The ViT tokenizer's configuration (architecture "titok"): sizes of TiTok's encoder and decoder and its latent
tokens, and the checks that tie them to the rest of an ImageTokenizerConfig.

An image of `resolution` pixels is cut into patches; the encoder reads [CLS] + patches + `num_latent_tokens`
learned latents and keeps the latents, which the quantizer turns into that many ids (the `1d` layout). The
decoder reads a mask token per patch + [CLS] + the quantized latents and predicts pixels, or (`legacy`) logits
over a proxy VQGAN's codes that a pixel decoder turns into pixels: MaskGIT-VQGAN's (`pixel_decoder` "maskgit", the
released models) or our own VQGAN decoder (`pixel_decoder` "vqgan", a 1D tokenizer distilled from one of ours,
training/distil_1d.py); that decoder's sizes are the config's own `ch`, `ch_mult`, `num_res_blocks`, `z_channels`
(and, for "vqgan", its attention fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError, shorten

if TYPE_CHECKING:
    from .config import ImageTokenizerConfig

MAX_LATENT_TOKENS = 65_536  # TiTok uses 32 to 256; FlexTok at most 256
MAX_VIT_LAYERS = 256  # TiTok-L has 24
MAX_VIT_WIDTH = 2**16
PIXEL_DECODERS = ("maskgit", "vqgan")
# Fields added after converted TiTok folders were first saved: left out of config.json (and the fingerprint) at
# these defaults, as config.OMITTED_AT_DEFAULT does for the top level.
VIT_OMITTED_AT_DEFAULT = {"pixel_decoder": "maskgit", "proxy_codebook_dim": None}


@dataclass
class ViTConfig:
    """TiTok's encoder and decoder (TiTok-S/B/L are 512/768/1024 wide, 8/12/24 layers, 8/12/16 heads)."""

    num_latent_tokens: int = 32  # ids per image (TiTok-L-32: 32)
    encoder_width: int = 512
    encoder_layers: int = 8
    encoder_heads: int = 8
    decoder_width: int = 512
    decoder_layers: int = 8
    decoder_heads: int = 8
    encoder_patch_size: int = 16  # pixels per patch side
    decoder_patch_size: int = 16
    mlp_ratio: float = 4.0  # hidden width of each block's MLP, as a multiple of its width
    # TiTok's released L-32/B-64/S-128: the encoder reads its latents [B, N, width] as [B, width, N] (the order their
    # checkpoints were trained with) and the decoder predicts logits over `proxy_codebook_size` MaskGIT-VQGAN codes,
    # decoded to pixels by that VQGAN's pixel decoder
    legacy: bool = False
    proxy_codebook_size: int = 1024
    # legacy: the decoder of the proxy's codes, "maskgit" (MaskGIT-VQGAN's) or "vqgan" (our Decoder: a 2D
    # ImageTokenizer's own, with its attention fields)
    pixel_decoder: str = "maskgit"
    # pixel_decoder "vqgan": the width of the proxy's code vectors, which a 1x1 post_quant_conv takes to z_channels
    # (the proxy's own); None: the codes are z_channels wide and go to the decoder directly (MaskGIT's way)
    proxy_codebook_dim: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        limits = {"num_latent_tokens": MAX_LATENT_TOKENS, "encoder_width": MAX_VIT_WIDTH, "decoder_width": MAX_VIT_WIDTH,
                  "encoder_layers": MAX_VIT_LAYERS, "decoder_layers": MAX_VIT_LAYERS, "encoder_heads": MAX_VIT_WIDTH,
                  "decoder_heads": MAX_VIT_WIDTH, "encoder_patch_size": 1024, "decoder_patch_size": 1024,
                  "proxy_codebook_size": 2**20}
        for name, limit in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
                raise ConfigError(f"vit.{name} must be an integer from 1 to {limit:,}, got {shorten(value)}")
        for part in ("encoder", "decoder"):
            width, heads = getattr(self, f"{part}_width"), getattr(self, f"{part}_heads")
            if width % heads:
                raise ConfigError(f"vit.{part}_width {width} is not divisible by vit.{part}_heads {heads}")
        if self.pixel_decoder not in PIXEL_DECODERS:
            raise ConfigError(f"vit.pixel_decoder must be one of {PIXEL_DECODERS}, got {shorten(self.pixel_decoder)}")
        if not self.legacy and self.pixel_decoder != "maskgit":
            raise ConfigError("vit.pixel_decoder applies to legacy models (vit.legacy true: logits over a proxy's codes); "
                              "remove it or set vit.legacy")
        dim = self.proxy_codebook_dim
        if dim is not None and (self.pixel_decoder != "vqgan" or not isinstance(dim, int) or isinstance(dim, bool)
                                or not 1 <= dim <= MAX_VIT_WIDTH):
            raise ConfigError(f"vit.proxy_codebook_dim must be an integer from 1 to {MAX_VIT_WIDTH:,} with "
                              f"vit.pixel_decoder 'vqgan', got {shorten(dim)} with {shorten(self.pixel_decoder)}")
        if not isinstance(self.mlp_ratio, (int, float)) or isinstance(self.mlp_ratio, bool) or not 0 < self.mlp_ratio <= 64:
            raise ConfigError(f"vit.mlp_ratio must be a number in (0, 64], got {shorten(self.mlp_ratio)}")


def vit_to_dict(vit: dict) -> dict:
    """A ViTConfig's asdict() without the fields that hold their VIT_OMITTED_AT_DEFAULT defaults."""
    return {k: v for k, v in vit.items() if not (k in VIT_OMITTED_AT_DEFAULT and v == VIT_OMITTED_AT_DEFAULT[k])}


def validate_titok(config: ImageTokenizerConfig) -> None:
    """What architecture "titok" asks of the rest of the config: a vit section, a vq quantizer on the encoder's
    output directly, patches that tile the image, and (legacy) a pixel decoder that upsamples one decoder patch
    to its pixels. A vit section on another architecture is an error too."""
    vit = config.vit
    if config.architecture != "titok":
        if vit is not None:
            raise ConfigError(f"vit applies to architecture 'titok', not {config.architecture!r}; remove it")
        return
    if vit is None:
        raise ConfigError("architecture 'titok' needs a vit section (ViTConfig: num_latent_tokens, widths, ...)")
    if config.quantizer.kind != "vq":
        raise ConfigError(f"architecture 'titok' quantizes with kind 'vq', got {shorten(config.quantizer.kind)}")
    if config.use_quant_conv or config.use_post_quant_conv or config.encoder_only:
        raise ConfigError("architecture 'titok' projects to codebook_dim inside its encoder and decoder: set "
                          "use_quant_conv, use_post_quant_conv and encoder_only to false")
    if (config.attn_resolutions or config.use_mid_attention) and not (vit.legacy and vit.pixel_decoder == "vqgan"):
        raise ConfigError("architecture 'titok' has no VQGAN attention unless its pixel decoder is ours (vit.legacy "
                          "and vit.pixel_decoder 'vqgan'): set attn_resolutions to [] and use_mid_attention to false")
    for part in ("encoder", "decoder"):
        patch = getattr(vit, f"{part}_patch_size")
        if config.resolution % patch:
            raise ConfigError(f"resolution {config.resolution} is not a multiple of vit.{part}_patch_size {patch}")
    upsampling = 2 ** (len(config.ch_mult) - 1)
    if vit.legacy and upsampling != vit.decoder_patch_size:
        raise ConfigError(f"a legacy titok model's pixel decoder upsamples by 2 ** (len(ch_mult) - 1) = {upsampling}, "
                          f"which must equal vit.decoder_patch_size {vit.decoder_patch_size}")
