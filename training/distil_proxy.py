"""The proxy of a 1D distillation (training/distil_1d.py): a saved 2D ImageTokenizer, checked to be one whose codes
and decoder a 1D tokenizer can learn and reuse; the student's config built from it; its pixel decoder copied in.

The proxy must be a grid tokenizer (one id per cell of an h x w grid) with our VQGAN decoder (architecture vqgan),
a decoder, and 1x1 convs around its quantizer. Each mistake is a ConfigError naming the proxy's config.json and
the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.config import QuantizerConfig
from image_tokenizer.errors import ConfigError, shorten
from image_tokenizer.hub import resolve_pretrained
from image_tokenizer.modeling import VQModel
from image_tokenizer.vit_config import ViTConfig

# ViTConfig fields the proxy decides: a run that sets them differently is refused
PROXY_VIT_FIELDS = ("legacy", "pixel_decoder", "proxy_codebook_size", "proxy_codebook_dim", "decoder_patch_size")
# the proxy's decoder fields that the student's pixel decoder is built from
DECODER_FIELDS = ("resolution", "ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "dropout",
                  "norm_groups", "use_mid_attention", "decoder_ch_mult")
# the student's codebook unless the run says otherwise: TiTok's l2-normalised lookups, a codebook for small data
DEFAULT_QUANTIZER = {"kind": "vq", "distance": "cosine", "codebook_size": 1024, "codebook_dim": 12}


def load_proxy(name_or_path: str) -> ImageTokenizer:
    """The proxy tokenizer (a saved folder, bundled name or Hub repo id), checked (messages name its config.json)."""
    directory = resolve_pretrained(name_or_path, allow_patterns=list(ImageTokenizer.hub_files))
    proxy = ImageTokenizer.from_pretrained(directory)
    check_proxy(proxy.config, Path(directory) / "config.json")
    proxy.model.eval()
    return proxy


def check_proxy(config: ImageTokenizerConfig, where: Path) -> None:
    """A grid tokenizer with our VQGAN decoder and 1x1 convs around its quantizer, else a ConfigError naming the
    field."""
    if config.architecture != "vqgan":
        raise ConfigError(f"{where}: field 'architecture' is {shorten(config.architecture)}; the 1D tokenizer decodes "
                          "through the proxy's decoder, which must be our VQGAN decoder (architecture 'vqgan')")
    if config.layout.kind != "grid":
        raise ConfigError(f"{where}: field 'quantizer.kind' is {config.quantizer.kind!r}: the proxy's ids are layout "
                          f"{config.layout.kind!r}, not a grid; distil from a grid tokenizer (vq, fsq or lfq)")
    if config.encoder_only:
        raise ConfigError(f"{where}: field 'encoder_only' is true: the proxy has no decoder for stage 2 to decode through")
    if config.quant_conv_kernel_size != 1:
        raise ConfigError(f"{where}: field 'quant_conv_kernel_size' is {config.quant_conv_kernel_size}; the 1D "
                          "tokenizer's pixel decoder takes the proxy's codes through a 1x1 post_quant_conv only")


def student_config(proxy: ImageTokenizer, vit: dict[str, Any], quantizer: dict[str, Any], name: str) -> ImageTokenizerConfig:
    """The 1D tokenizer's config: the run's ViT and codebook, the proxy's resolution, preprocessing and decoder
    fields, and a legacy decoder that predicts the proxy's codes (pixel decoder "vqgan")."""
    config = proxy.config
    decided = {"legacy": True, "pixel_decoder": "vqgan", "proxy_codebook_size": proxy.config.quantizer.codebook_size,
               "proxy_codebook_dim": config.quantizer_input_dim if config.use_post_quant_conv else None,
               "decoder_patch_size": config.downsample_factor}
    for key, value in decided.items():
        if key in vit and vit[key] != value:
            raise ConfigError(f"vit.{key} is {shorten(vit[key])}, but the proxy {name} decides it: {shorten(value)} "
                              "(remove it)")
    unknown = sorted(set(vit) - {f for f in ViTConfig.__dataclass_fields__})
    if unknown:
        raise ConfigError(f"vit: unknown field(s) {unknown} (ViTConfig fields: num_latent_tokens, encoder_width, ...)")
    q = {**DEFAULT_QUANTIZER, **quantizer}
    if q["kind"] != "vq":
        raise ConfigError(f"quantizer.kind is {shorten(q['kind'])}; a distilled 1D tokenizer learns a vq codebook")
    return ImageTokenizerConfig(
        architecture="titok", use_quant_conv=False, use_post_quant_conv=False,
        **{field: getattr(config, field) for field in DECODER_FIELDS},
        vit=ViTConfig(**{**vit, **decided}), quantizer=QuantizerConfig(**q), preprocessing=config.preprocessing,
    )


@torch.no_grad()
def proxy_code_vectors(proxy: ImageTokenizer) -> torch.Tensor:
    """Every proxy code as its decoder receives it ([K, width], after any projection out of the lookup space):
    what the student's softmax mixes."""
    k = proxy.config.quantizer.codebook_size
    ids = torch.arange(k, device=proxy.model.device).reshape(1, 1, k)
    return proxy.model.quantizer.lookup(ids).reshape(-1, k).t().float().cpu()


@torch.no_grad()
def copy_pixel_decoder(proxy: ImageTokenizer, student: VQModel) -> None:
    """The student's pixel decoder := the proxy's code vectors, post_quant_conv and decoder (strict copies)."""
    target = student.decoder.pixel_decoder
    target.codebook.copy_(proxy_code_vectors(proxy))
    if target.post_quant_conv is not None:
        target.post_quant_conv.load_state_dict(proxy.model.post_quant_conv.state_dict(), strict=True)
    target.decoder.load_state_dict(proxy.model.decoder.state_dict(), strict=True)
