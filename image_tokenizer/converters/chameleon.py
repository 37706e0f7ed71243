"""transformers' ChameleonVQVAE: the encoder and codebook of Chameleon's image tokenizer (no decoder).

The released Chameleon checkpoints carry no decoder weights, so the result is encoder-only: encode,
__call__ and pre-tokenization work, decode is a clear error. `post_quant_conv`, which only feeds a decoder,
is dropped. The lookup is plain L2 (no normalisation), as in Chameleon. Preprocessing follows Chameleon's
image processor: shortest side to 512 (Lanczos), centre crop, pixels * 0.0078 - 1, transparency onto white.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from .common import Converted, at_resolution, folder_config, read_transformers_vq, rename_keys, require, take_codebook

NAME = "chameleon"
MODEL_TYPES = ("chameleon_vqgan", "chameleon")
LICENSE = "Chameleon Research License (Meta, non-commercial research); check the source repository's license"
RESCALE = 0.0078  # Chameleon's rescale_factor; with mean = std = 1: x * 0.0078 - 1


def detect(path: Path) -> bool:
    return folder_config(path).get("model_type") in MODEL_TYPES


def load(path: Path, resolution: int | None = None) -> Converted:
    vq, state, weights_file = read_transformers_vq(path, MODEL_TYPES)
    where = path / "config.json"
    vanilla = vq.get("attn_type", "vanilla") == "vanilla"
    # (x / 255 - m) / s = x * 0.0078 - 1  <=>  s = m = 1 / (255 * 0.0078)
    scale = 1.0 / (255.0 * RESCALE)
    config = ImageTokenizerConfig(
        resolution=require(vq, "resolution", where, int),
        in_channels=require(vq, "in_channels", where, int),
        ch=require(vq, "base_channels", where, int),
        ch_mult=tuple(require(vq, "channel_multiplier", where, (list, tuple))),
        num_res_blocks=require(vq, "num_res_blocks", where, int),
        attn_resolutions=tuple(vq.get("attn_resolutions") or ()) if vanilla else (),
        z_channels=require(vq, "latent_channels", where, int),
        use_mid_attention=vanilla,
        use_post_quant_conv=False,
        encoder_only=True,
        quantizer=QuantizerConfig(
            codebook_size=require(vq, "num_embeddings", where, int),
            codebook_dim=require(vq, "embed_dim", where, int),
            l2_normalize=False,
        ),
        preprocessing=PreprocessingConfig(
            resize_mode="resize_center_crop", resample="lanczos", image_mean=(scale,) * 3, image_std=(scale,) * 3,
            alpha_background=(255, 255, 255),
        ),
    )
    rules = [
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"post_quant_conv\..*", None),  # feeds a decoder that the release does not include
        (r"(encoder|quant_conv)\..*", r"\g<0>"),
    ]
    weights = rename_keys(state, rules, weights_file)
    codebook = take_codebook(weights, weights_file)
    return Converted(at_resolution(config, resolution), weights, codebook, weights_file, {
        "license": LICENSE,
        "ids": "Chameleon VQ ids (codebook indices 0..8191, row-major); the Chameleon LM sees them through its "
        "vocabulary_map as BPE tokens 'IMGIMG...' (ChameleonImageVocabularyMapping), between <racm3:break> markers",
        "pairs_with": "ChameleonForConditionalGeneration (transformers), or an ImagePrior trained on these ids",
    })
