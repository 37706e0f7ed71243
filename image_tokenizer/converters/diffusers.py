"""diffusers' VQModel folders (config.json with _class_name "VQModel" + diffusion_pytorch_model.safetensors).

diffusers renamed taming's layers: resnets/conv_shortcut/mid_block/conv_norm_out, attention as linear
`to_q/to_k/to_v/to_out.0` (or the older `query/key/value/proj_attn`), whose weights become our 1x1 convs.
Its decoder's `up_blocks` are stored lowest resolution first. MoVQ (norm_type "spatial") is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConfigError, ConversionError, shorten
from ..textfiles import read_json_object
from .common import (
    ALPHA_DROPPED,
    Converted,
    at_resolution,
    ch_and_mult,
    folder_config,
    load_weights_file,
    rename_keys,
    require,
    source_file,
    take_codebook,
)

NAME = "diffusers"
LICENSE = "the license of the source repository (diffusers VQModel checkpoints vary); check its model card"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
ATTENTION = {"to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out", "query": "q", "key": "k",
             "value": "v", "proj_attn": "proj_out", "group_norm": "norm"}
PLAIN_BLOCKS = {"down": ("DownEncoderBlock2D", "AttnDownEncoderBlock2D"), "up": ("UpDecoderBlock2D", "AttnUpDecoderBlock2D")}


def detect(path: Path) -> bool:
    return folder_config(path).get("_class_name") == "VQModel"


def config_from_json(where: Path) -> ImageTokenizerConfig:
    data = read_json_object(where, ConversionError)
    if data.get("norm_type", "group") != "group":
        raise ConversionError(
            f"{where}: norm_type {shorten(data['norm_type'])} (MoVQ's spatially conditioned decoder norm) is not supported; "
            "only norm_type 'group'"
        )
    if data.get("act_fn", "silu") != "silu":
        raise ConversionError(f"{where}: act_fn {shorten(data['act_fn'])} is not supported; only 'silu'")
    down = require(data, "down_block_types", where, (list, tuple))
    up = require(data, "up_block_types", where, (list, tuple))
    for kind, blocks in (("down", down), ("up", up)):
        unknown = [b for b in blocks if b not in PLAIN_BLOCKS[kind]]
        if unknown:
            raise ConversionError(f"{where}: {kind}_block_types {shorten(unknown)} are not supported; known: {PLAIN_BLOCKS[kind]}")
    ch, mult = ch_and_mult(list(require(data, "block_out_channels", where, (list, tuple))), where, "block_out_channels")
    if len(down) != len(mult) or len(up) != len(mult):
        raise ConversionError(f"{where}: {len(down)} down and {len(up)} up blocks for {len(mult)} block_out_channels")
    size = data.get("sample_size", 32)
    side = size[0] if isinstance(size, (list, tuple)) and size else size
    if not isinstance(side, int) or isinstance(side, bool) or side < 1:
        raise ConversionError(f"{where}: sample_size must be a positive integer, got {shorten(size)}")
    attention_down = {side // 2**i for i, b in enumerate(down) if b.startswith("Attn")}
    attention_up = {side // 2 ** (len(up) - 1 - i) for i, b in enumerate(up) if b.startswith("Attn")}
    if attention_down != attention_up:
        raise ConversionError(f"{where}: attention at different levels in down_block_types and up_block_types")
    latent = require(data, "latent_channels", where, int)
    try:  # sizes no model has (widths of 10^9, ...) are our ConfigError: name this file
        return ImageTokenizerConfig(
            resolution=side,
            in_channels=require(data, "in_channels", where, int),
            out_channels=require(data, "out_channels", where, int),
            ch=ch,
            ch_mult=mult,
            num_res_blocks=require(data, "layers_per_block", where, int),
            attn_resolutions=tuple(sorted(attention_down)),
            z_channels=latent,
            norm_groups=data.get("norm_num_groups", 32),
            use_mid_attention=bool(data.get("mid_block_add_attention", True)),
            quantizer=QuantizerConfig(
                codebook_size=require(data, "num_vq_embeddings", where, int),
                codebook_dim=data.get("vq_embed_dim") or latent,
                l2_normalize=False,
            ),
            preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bicubic",  # [-1, 1]
                                              alpha_background=ALPHA_DROPPED),
        )
    except ConfigError as error:
        raise ConversionError(f"{where}: {error}") from None


def _rules(levels: int) -> list:
    attention = "|".join(re.escape(k) for k in ATTENTION)

    def attn(prefix: str):
        return lambda m: f"{prefix(m)}.{ATTENTION[m.group('layer')]}.{m.group('param')}"

    up = lambda i: levels - 1 - int(i)
    return [
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"(quant_conv|post_quant_conv|(encoder|decoder)\.(conv_in|conv_out))\.(weight|bias)", r"\g<0>"),
        (r"(encoder|decoder)\.conv_norm_out\.(weight|bias)", r"\1.norm_out.\2"),
        (r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(.*)", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"),
        (rf"(?P<part>encoder|decoder)\.mid_block\.attentions\.0\.(?P<layer>{attention})\.(?P<param>weight|bias)",
         attn(lambda m: f"{m['part']}.mid.attn_1")),
        (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.conv_shortcut\.(.*)", r"encoder.down.\1.block.\2.nin_shortcut.\3"),
        (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", r"encoder.down.\1.block.\2.\3"),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", r"encoder.down.\1.downsample.conv.\2"),
        (rf"encoder\.down_blocks\.(?P<i>\d+)\.attentions\.(?P<j>\d+)\.(?P<layer>{attention})\.(?P<param>weight|bias)",
         attn(lambda m: f"encoder.down.{m['i']}.attn.{m['j']}")),
        (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.conv_shortcut\.(.*)",
         lambda m: f"decoder.up.{up(m[1])}.block.{m[2]}.nin_shortcut.{m[3]}"),
        (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", lambda m: f"decoder.up.{up(m[1])}.block.{m[2]}.{m[3]}"),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", lambda m: f"decoder.up.{up(m[1])}.upsample.conv.{m[2]}"),
        (rf"decoder\.up_blocks\.(?P<i>\d+)\.attentions\.(?P<j>\d+)\.(?P<layer>{attention})\.(?P<param>weight|bias)",
         attn(lambda m: f"decoder.up.{up(m['i'])}.attn.{m['j']}")),
    ]


def load(path: Path, resolution: int | None = None) -> Converted:
    where = source_file(path, path / "config.json")
    config = config_from_json(where)
    weights_file = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights_file is None:
        raise ConversionError(f"{path}: no {' or '.join(WEIGHT_FILES)} beside config.json")
    source_file(path, weights_file)
    weights = rename_keys(load_weights_file(weights_file), _rules(len(config.ch_mult)), weights_file)
    for key, tensor in weights.items():  # diffusers' linear attention projections -> our 1x1 convolutions
        if re.search(r"\.(q|k|v|proj_out)\.weight$", key) and tensor.ndim == 2:
            weights[key] = tensor[:, :, None, None]
    codebook = take_codebook(weights, weights_file)
    return Converted(at_resolution(config, resolution), weights, codebook, weights_file, {
        "license": LICENSE,
        "ids": "indices into the VQModel's codebook (num_vq_embeddings), row-major",
        "pairs_with": "the pipeline the VQModel came from (for example VQ-Diffusion's transformer), or an ImagePrior "
        "trained on these ids",
    })



