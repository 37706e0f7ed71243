"""transformers' JanusVQVAE (Janus / Janus-Pro image-generation VQ): LlamaGen's VQ-16 under taming's names.

The original Janus (and LlamaGen) l2-normalise both the latent and the codes before the nearest-code lookup,
and the released weights were trained that way. transformers' port normalises only when decoding, not in
`quantize.forward`; we keep the original semantics (l2_normalize=True), so ids are the original Janus ids.
The decoder's levels are stored lowest resolution first (`decoder.up.0` is the lowest), ours full resolution first.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from .common import (
    ALPHA_DROPPED,
    Converted,
    at_resolution,
    attention_at_lowest_level,
    folder_config,
    read_transformers_vq,
    rename_keys,
    require,
    reversed_level,
    take_codebook,
)

NAME = "janus"
MODEL_TYPES = ("janus_vqgan", "janus")
LICENSE = "DeepSeek Model License (Janus / Janus-Pro weights); check the source repository's license"


def detect(path: Path) -> bool:
    return folder_config(path).get("model_type") in MODEL_TYPES


def load(path: Path, resolution: int | None = None) -> Converted:
    vq, state, weights_file = read_transformers_vq(path, MODEL_TYPES)
    where = path / "config.json"
    mult = tuple(require(vq, "channel_multiplier", where, (list, tuple)))
    levels = len(mult)
    side = require(vq, "num_patches", where, int) * 2 ** (levels - 1)
    config = ImageTokenizerConfig(
        resolution=side,
        in_channels=require(vq, "in_channels", where, int),
        out_channels=require(vq, "out_channels", where, int),
        ch=require(vq, "base_channels", where, int),
        ch_mult=mult,
        num_res_blocks=require(vq, "num_res_blocks", where, int),
        attn_resolutions=attention_at_lowest_level(side, levels),
        z_channels=require(vq, "latent_channels", where, int),
        quantizer=QuantizerConfig(
            codebook_size=require(vq, "num_embeddings", where, int),
            codebook_dim=require(vq, "embed_dim", where, int),
            l2_normalize=True,
        ),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bicubic",  # [-1, 1]
                                          alpha_background=ALPHA_DROPPED),
    )
    rules = [
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"decoder\.up\.(\d+)\.(.*)", reversed_level(levels)),
        (r"(encoder|decoder|quant_conv|post_quant_conv)\..*", r"\g<0>"),
    ]
    weights = rename_keys(state, rules, weights_file)
    codebook = take_codebook(weights, weights_file)
    return Converted(at_resolution(config, resolution), weights, codebook, weights_file, {
        "license": LICENSE,
        "ids": "Janus image-generation ids: indices into the 16,384-code VQ-16 codebook, row-major; Janus's LM "
        "predicts them through its own generation head (gen_head), not its text vocabulary",
        "pairs_with": "JanusForConditionalGeneration (transformers), or an ImagePrior trained on these ids",
    })
