"""Open-MAGVIT2 (TencentARC, SEED-Voken; PyPI `open-magvit2`): a Lightning `.ckpt` beside its yaml
(model.class_path `...models.lfqgan.VQModel`, init_args: ddconfig, n_embed, embed_dim, use_ema).

Architecture "magvit2" (modeling/magvit2.py, the published key names one to one) and a lookup-free quantizer:
bit i of an id is channel i of the encoder's output being > 0 (channel 0 the lowest bit), and the code of an id is
its bits as +-1. Without a yaml the shapes are read off the weights, which is said on stderr.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError, shorten
from .common import ALPHA_DROPPED, Converted, at_resolution, rename_keys, require
from .lightning import class_path_or_none, data_resolution, encoder_shapes, find_files, model_section, read_release

NAME = "open-magvit2"
LICENSE = "Apache-2.0 (TencentARC SEED-Voken / Open-MAGVIT2 repository; check the weights' Hub model card)"
DEFAULT_RESOLUTION = 256
PARTS = ("encoder.", "decoder.")


def _is_lfqgan(class_path: str) -> bool:
    """The image tokenizer's Lightning module, as SEED-Voken, the Open-MAGVIT2 repo or the PyPI package name it."""
    return re.fullmatch(r"(.*\.)?lfqgan(_pretrain)?\.VQModel", class_path) is not None


def detect(path: Path) -> bool:
    files = find_files(path)
    if files is None:
        return False
    checkpoint, yaml_path = files
    if yaml_path is not None:
        return _is_lfqgan(class_path_or_none(yaml_path))
    try:  # no yaml: only the decoder's adaptive group norms tell this layout apart (a lazy read of the keys)
        state = torch.load(str(checkpoint), map_location="meta", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (detection never fails; load() gives the precise error)
        return False
    keys = state.get("state_dict", {}) if isinstance(state, dict) else {}
    return isinstance(keys, dict) and "decoder.adaptive.0.gamma.weight" in keys


def yaml_args(yaml_path: Path) -> dict[str, Any]:
    """The fields of the yaml that define the model, refusing the variants whose ids mean something else."""
    class_path, args = model_section(yaml_path)
    if not _is_lfqgan(class_path):
        raise ConversionError(f"{yaml_path}: model.class_path {shorten(class_path)} is not Open-MAGVIT2's image tokenizer "
                              "(...models.lfqgan.VQModel; the video tokenizer is not supported)")
    dd = require(args, "ddconfig", yaml_path, dict)
    for key, expected in (("in_channels", 3), ("out_ch", 3)):
        if dd.get(key, expected) != expected:
            raise ConversionError(f"{yaml_path}: ddconfig.{key} is {shorten(dd[key])}; image-tokenizer works on RGB images")
    result = {
        "ch": require(dd, "ch", yaml_path, int), "ch_mult": list(require(dd, "ch_mult", yaml_path, list)),
        "num_res_blocks": require(dd, "num_res_blocks", yaml_path, int),
        "z_channels": require(dd, "z_channels", yaml_path, int),
        "n_embed": require(args, "n_embed", yaml_path, int), "embed_dim": require(args, "embed_dim", yaml_path, int),
        "use_ema": bool(args.get("use_ema", False)),
    }
    if result["n_embed"] != 2 ** result["embed_dim"]:
        raise ConversionError(f"{yaml_path}: model.init_args.n_embed {result['n_embed']} is not "
                              f"2 ** embed_dim ({result['embed_dim']}): lookup-free codes are all sign patterns")
    return result


def inferred_args(state: dict[str, torch.Tensor], where: Path, given: dict[str, Any] | None) -> dict[str, Any]:
    """The model args the weights show: the encoder's widths, and one bit per output channel."""
    args = encoder_shapes(state, where)
    return {**args, "embed_dim": args["z_channels"], "n_embed": 2 ** args["z_channels"]}


def load(path: Path, resolution: int | None = None) -> Converted:
    args, state, checkpoint, yaml_path = read_release(path, "Open-MAGVIT2", PARTS, yaml_args, inferred_args)
    bits = args["embed_dim"]
    config = ImageTokenizerConfig(
        architecture="magvit2",
        resolution=(data_resolution(yaml_path) if yaml_path else None) or DEFAULT_RESOLUTION,
        ch=args["ch"], ch_mult=tuple(args["ch_mult"]), num_res_blocks=args["num_res_blocks"],
        z_channels=args["z_channels"], use_mid_attention=False, use_quant_conv=False, use_post_quant_conv=False,
        quantizer=QuantizerConfig(kind="lfq", bits=bits, bit_order="lsb_first"),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bilinear",  # [-1, 1]
                                          alpha_background=ALPHA_DROPPED),
    )
    rules = [
        (r"quantize\.(mask|pre_mask|post_mask|zero|codebook)", None),  # LFQ's derived buffers, if an old version saved them
        (r"(encoder|decoder)\..*", r"\g<0>"),
    ]
    weights = rename_keys(state, rules, checkpoint)
    return Converted(at_resolution(config, resolution), weights, None, checkpoint, {
        "license": LICENSE,
        "ids": f"Open-MAGVIT2 LFQ ids: {bits} bits, id = sum of bit_i * 2^i where bit_i = (channel i of the "
        f"encoder's output > 0), channel 0 the lowest bit; {2 ** bits:,} ids, row-major. The code of an id is its "
        "bits as +-1. Their autoregressive model factorises an id into its low 6 and high 12 bits "
        f"(id % 64, id // 64){'' if bits == 18 else ' at 18 bits'}",
        "pairs_with": "Open-MAGVIT2's Llama-based AR models (with factorised ids), or an ImagePrior / transformers "
        "causal LM trained on these ids",
    })

