"""transformers' Emu3VQVAE (BAAI's Emu3 vision tokenizer) -> an ImageTokenizer with the ids of `Emu3VQVAE.encode`.

A save_pretrained folder of Emu3VQVAE (model_type emu3_vqgan), or of a full Emu3 model (model_type emu3, the VQ
under `model.vqmodel.`). The lookup is plain L2 (no normalisation). quant_conv and post_quant_conv are causal
Conv3d with a temporal kernel of 3 applied to the single frame an image leaves: with two zero frames in front only
their last temporal tap meets data, so they become 1x1 Conv2d with that tap. BatchNorm's `num_batches_tracked`
counters only matter in training and are skipped. Preprocessing follows the folder's preprocessor_config.json
(transformers' Emu3ImageProcessor defaults where it has none): rescale by 1/255, then mean/std.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError
from ..textfiles import read_json_object
from .common import (
    ALPHA_DROPPED,
    Converted,
    at_resolution,
    folder_config,
    read_transformers_vq,
    rename_keys,
    require,
    source_file,
    take_codebook,
)

NAME = "emu3"
MODEL_TYPES = ("emu3_vqgan", "emu3")
LICENSE = "Apache-2.0 (BAAI's Emu3 vision tokenizer, BAAI/Emu3-VisionTokenizer); check the source repository's license"
RESOLUTION = 512  # Emu3ImageProcessor's min_pixels is 512 * 512: a 512 x 512 image is tokenised as it is
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # Emu3ImageProcessor's defaults (OPENAI_CLIP_MEAN / _STD)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box"}  # PIL's numbering


def detect(path: Path) -> bool:
    return folder_config(path).get("model_type") in MODEL_TYPES


def load(path: Path, resolution: int | None = None) -> Converted:
    vq, state, weights_file = read_transformers_vq(path, MODEL_TYPES)
    where = path / "config.json"
    config = ImageTokenizerConfig(
        architecture="emu3",
        resolution=RESOLUTION,
        in_channels=require(vq, "in_channels", where, int),
        out_channels=require(vq, "out_channels", where, int),
        ch=require(vq, "base_channels", where, int),
        ch_mult=tuple(require(vq, "channel_multiplier", where, (list, tuple))),
        num_res_blocks=require(vq, "num_res_blocks", where, int),
        z_channels=require(vq, "latent_channels", where, int),
        norm_groups=32,
        temporal_downsample_factor=require(vq, "temporal_downsample_factor", where, int),
        attention_heads=require(vq, "num_attention_heads", where, int),
        quantizer=QuantizerConfig(
            codebook_size=require(vq, "codebook_size", where, int),
            codebook_dim=require(vq, "embed_dim", where, int),
            l2_normalize=False,
        ),
        preprocessing=read_preprocessing(path),
    )
    levels = [int(i) for i in require(vq, "attn_resolutions", where, (list, tuple))]  # level indices, not sides
    sides = config.level_resolutions
    config = dataclasses.replace(config, attn_resolutions=tuple(sides[i] for i in levels if 0 <= i < len(sides)))
    check_widths(vq, config, where)
    rules = [
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"(quant_conv|post_quant_conv)\.conv\.(weight|bias)", r"\1.\2"),
        (r"(encoder|decoder)\..*\.num_batches_tracked", None),
        (r"(encoder|decoder)\..*", r"\g<0>"),
    ]
    skipped = sorted(k for k in state if k.endswith("num_batches_tracked"))
    if skipped:
        print(f"{weights_file}: skipping training-only keys: {', '.join(skipped)}", file=sys.stderr)
    weights = rename_keys(state, rules, weights_file)
    for name in ("quant_conv.weight", "post_quant_conv.weight"):
        if name in weights:  # [out, in, 3, 1, 1] -> [out, in, 1, 1]: the last temporal tap
            weights[name] = weights[name][:, :, -1]
    codebook = take_codebook(weights, weights_file)
    return Converted(at_resolution(config, resolution), weights, codebook, weights_file, {
        "license": LICENSE,
        "ids": "Emu3 vision-tokenizer ids: indices into its codebook (32,768 codes in the release), row-major, "
        "as Emu3VQVAE.encode gives for an image; Emu3's LM sees id i as its text token '<|visual token i|>' "
        "(Emu3ImageVocabularyMapping), with rows ended by an end-of-line token",
        "pairs_with": "Emu3ForConditionalGeneration (transformers), or an ImagePrior trained on these ids",
    })


def check_widths(vq: dict, config: ImageTokenizerConfig, where: Path) -> None:
    """Emu3's attention is hidden_size wide and its decoder's temporal layers see latent and codes together."""
    hidden = require(vq, "hidden_size", where, int)
    widths = {config.ch * config.ch_mult[-1]} | {
        config.ch * m for m, side in zip(config.ch_mult, config.level_resolutions) if side in config.attn_resolutions}
    if widths != {hidden}:
        raise ConversionError(f"{where}: hidden_size {hidden} differs from the attention blocks' widths {sorted(widths)}")
    if config.quantizer.codebook_dim != config.z_channels:
        raise ConversionError(f"{where}: embed_dim {config.quantizer.codebook_dim} differs from latent_channels "
                              f"{config.z_channels}; Emu3's decoder runs both through the same temporal layers")
    if vq.get("double_latent"):
        raise ConversionError(f"{where}: double_latent is true, which a VQ model never uses")


def read_preprocessing(path: Path) -> PreprocessingConfig:
    """Mean, std and resampling from preprocessor_config.json (Emu3ImageProcessor's defaults where absent)."""
    file = path / "preprocessor_config.json"
    processor = read_json_object(source_file(path, file), ConversionError) if file.is_file() else {}
    if processor.get("do_rescale", True) is False or processor.get("do_normalize", True) is False:
        raise ConversionError(f"{file}: do_rescale and do_normalize must be true (Emu3 sees normalised pixels)")
    scale = processor.get("rescale_factor", 1 / 255)
    if abs(scale * 255 - 1) > 1e-6:
        raise ConversionError(f"{file}: rescale_factor {scale} is not 1/255")
    mean = tuple(processor.get("image_mean", CLIP_MEAN))
    std = tuple(processor.get("image_std", CLIP_STD))
    resample = RESAMPLE.get(processor.get("resample", 3), "bicubic")
    return PreprocessingConfig(resize_mode="resize_center_crop", resample=resample, image_mean=mean, image_std=std,
                               alpha_background=ALPHA_DROPPED)
