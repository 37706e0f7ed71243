"""IBQ (TencentARC, SEED-Voken): a Lightning `.ckpt` beside its yaml (model.class_path `...models.ibqgan.IBQ`,
init_args: ddconfig, n_embed, embed_dim, use_ema).

IBQ's encoder and decoder are taming's VQGAN (architecture "vqgan", taming's key names, quant_conv and
post_quant_conv); what differs is the lookup: `IndexPropagationQuantize` picks argmax_k z . e_k, the dot product
with no normalisation (quantizer distance "dot"). Without a yaml the shapes are read off the weights (attention
where the encoder has it, for 256-pixel images), which is said on stderr.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError, shorten
from .common import ALPHA_DROPPED, Converted, at_resolution, rename_keys, require, take_codebook
from .lightning import class_path_or_none, data_resolution, encoder_shapes, find_files, model_section, read_release

NAME = "ibq"
LICENSE = "Apache-2.0 (TencentARC SEED-Voken repository, which holds IBQ; check the weights' Hub model card)"
DEFAULT_RESOLUTION = 256
PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.")


def _is_ibq(class_path: str) -> bool:
    return re.fullmatch(r"(.*\.)?ibqgan(_pretrain)?\.IBQ", class_path) is not None


def detect(path: Path) -> bool:
    files = find_files(path)
    return files is not None and files[1] is not None and _is_ibq(class_path_or_none(files[1]))


def yaml_args(yaml_path: Path) -> dict[str, Any]:
    """The fields of the yaml that define the model, refusing the variants whose ids mean something else."""
    class_path, args = model_section(yaml_path)
    if not _is_ibq(class_path):
        raise ConversionError(f"{yaml_path}: model.class_path {shorten(class_path)} is not IBQ (...models.ibqgan.IBQ)")
    if args.get("remap"):
        raise ConversionError(f"{yaml_path}: model.init_args.remap is set: remapped ids index a subset of the "
                              "codebook, which is not supported")
    dd = require(args, "ddconfig", yaml_path, dict)
    for key, expected in (("in_channels", 3), ("out_ch", 3), ("double_z", False)):
        if dd.get(key, expected) != expected:
            raise ConversionError(f"{yaml_path}: ddconfig.{key} is {shorten(dd[key])}, expected {expected!r}")
    return {
        "ch": require(dd, "ch", yaml_path, int), "ch_mult": list(require(dd, "ch_mult", yaml_path, list)),
        "num_res_blocks": require(dd, "num_res_blocks", yaml_path, int),
        "z_channels": require(dd, "z_channels", yaml_path, int),
        "resolution": require(dd, "resolution", yaml_path, int),
        "attn_resolutions": sorted(require(dd, "attn_resolutions", yaml_path, list)),
        "dropout": float(dd.get("dropout", 0.0)),
        "n_embed": require(args, "n_embed", yaml_path, int), "embed_dim": require(args, "embed_dim", yaml_path, int),
        "use_ema": bool(args.get("use_ema", False)),
    }


def inferred_args(state: dict[str, torch.Tensor], where: Path, given: dict[str, Any] | None) -> dict[str, Any]:
    """The model args the weights show: encoder widths, the codebook's shape, and attention where the encoder has
    it (at the yaml's resolution, else at 256 pixels)."""
    args = encoder_shapes(state, where)
    codebook = state.get("quantize.embedding.weight")
    if codebook is None or codebook.ndim != 2:
        raise ConversionError(f"{where}: the codebook 'quantize.embedding.weight' is missing")
    args["n_embed"], args["embed_dim"] = codebook.shape
    args["resolution"] = given["resolution"] if given else DEFAULT_RESOLUTION
    levels = {int(m[1]) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.attn\.", k))}
    args["attn_resolutions"] = sorted(args["resolution"] // 2**level for level in levels)
    args["dropout"] = given["dropout"] if given else 0.0
    return args


def load(path: Path, resolution: int | None = None) -> Converted:
    args, state, checkpoint, yaml_path = read_release(path, "IBQ", PARTS, yaml_args, inferred_args)
    config = ImageTokenizerConfig(
        resolution=args["resolution"], ch=args["ch"], ch_mult=tuple(args["ch_mult"]),
        num_res_blocks=args["num_res_blocks"], attn_resolutions=tuple(args["attn_resolutions"]),
        z_channels=args["z_channels"], dropout=args["dropout"],
        quantizer=QuantizerConfig(codebook_size=args["n_embed"], codebook_dim=args["embed_dim"], kind="vq",
                                  distance="dot"),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bilinear",  # [-1, 1]
                                          alpha_background=ALPHA_DROPPED),
    )
    rules = [
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"(encoder|decoder|quant_conv|post_quant_conv)\..*", r"\g<0>"),
    ]
    weights = rename_keys(state, rules, checkpoint)
    codebook = take_codebook(weights, checkpoint)
    size = resolution or (data_resolution(yaml_path) if yaml_path else None)
    return Converted(at_resolution(config, size), weights, codebook, checkpoint, {
        "license": LICENSE,
        "ids": f"IBQ ids: rows of the {args['n_embed']:,}-entry codebook, id = argmax_k z . e_k (the dot product "
        "of the quant_conv output with each code, no normalisation), row-major",
        "pairs_with": "IBQ's Llama-based AR models, or an ImagePrior / transformers causal LM trained on these ids",
    })
