"""RQ-VAE (kakaobrain/rq-vae-transformer): a stage-1 folder holding `model.pt` (a dict whose `state_dict` holds the
weights) and `config.yaml` (their OmegaConf training config: `arch.type` rq-vae, `arch.hparams`, `arch.ddconfig`).

The encoder and decoder are taming's VQGAN (architecture "vqgan", the same key names) with quant_conv and
post_quant_conv around the quantizer. The quantizer (their RQBottleneck) takes, at each position, `depth` =
code_shape[2] nearest codes (L2) in one codebook shared across depth, each of what the earlier ones left: kind
"residual", ids [h, w, depth]. Their state_dict repeats the shared codebook under `quantizer.codebooks.{i}.weight`
for each depth, [n_embed + 1, embed_dim]: the last row is nn.Embedding's padding row, which their lookup never
considers, and is dropped, as are the copies and the training-only EMA buffers (`cluster_size_ema`, `embed_ema`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError, shorten
from ..layouts import MAX_DEPTH
from .common import (
    ALPHA_DROPPED,
    Converted,
    at_resolution,
    nested_state_dict,
    read_yaml,
    rename_keys,
    require,
    source_file,
)
from .lightning import notice

NAME = "rqvae"
LICENSE = ("CC-BY-NC-SA-4.0 (kakaobrain rq-vae-transformer's pretrained weights; its code is Apache-2.0): "
           "non-commercial use only")
CHECKPOINT, CONFIG = "model.pt", "config.yaml"
CODEBOOK = re.compile(r"quantizer\.codebooks\.(\d+)\.weight")
RULES = [
    (r"quantizer\.codebooks\.\d+\.(cluster_size_ema|embed_ema)", None),  # EMA statistics: training only
    (r"(encoder|decoder|quant_conv|post_quant_conv)\..*", r"\g<0>"),
]


def find_files(path: Path) -> tuple[Path, Path] | None:
    """(checkpoint, config.yaml): a folder holding model.pt and config.yaml (or its stage1/ subfolder, as their
    release archives hold it), or a .pt file with config.yaml beside it (their load_model's convention)."""
    if path.is_file():
        config = path.parent / CONFIG
        return (path, source_file(path, config)) if path.suffix in (".pt", ".pth") and config.is_file() else None
    for folder in (path, path / "stage1"):
        if (folder / CHECKPOINT).is_file() and (folder / CONFIG).is_file():
            return source_file(path, folder / CHECKPOINT), source_file(path, folder / CONFIG)
    return None


def detect(path: Path) -> bool:
    """Their config.yaml (an `arch` section with a `type`) beside a checkpoint; load refuses other arch types."""
    files = find_files(path)
    if files is None:
        return False
    try:
        arch = read_yaml(files[1]).get("arch")
    except ConversionError:
        return False
    return isinstance(arch, dict) and isinstance(arch.get("type"), str)


def _field(section: dict[str, Any], name: str, where: Path, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """section[last part of name], typed; `name` is the dotted path the error names (arch.hparams.n_embed)."""
    key = name.rsplit(".", 1)[-1]
    if key not in section and default is not None:
        return default
    return require({name: section[key]} if key in section else {}, name, where, kind)


def _int_triple(section: dict[str, Any], name: str, where: Path) -> list[int]:
    value = _field(section, name, where, list)
    if len(value) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ConversionError(f"{where}: {name} must be three positive integers [h, w, d], got {shorten(value)}")
    return value


def read_arch(path: Path) -> dict[str, Any]:
    """The fields of config.yaml's `arch` that define the model, refusing the variants whose ids mean something else."""
    arch = _field(read_yaml(path), "arch", path, dict)
    kind = _field(arch, "arch.type", path, str)
    if kind != "rq-vae":
        hint = " (a stage-2 RQ-Transformer: convert the release's stage1 folder)" if kind == "rq-transformer" else ""
        raise ConversionError(f"{path}: arch.type is {shorten(kind)}{hint}; an RQ-VAE's config.yaml has arch.type rq-vae")
    hp = _field(arch, "arch.hparams", path, dict)
    dd = _field(arch, "arch.ddconfig", path, dict)
    if _field(hp, "arch.hparams.bottleneck_type", path, str, "rq") != "rq":
        raise ConversionError(f"{path}: arch.hparams.bottleneck_type is {shorten(hp['bottleneck_type'])}; RQ-VAE's is 'rq'")
    if isinstance(hp.get("n_embed"), list):
        raise ConversionError(f"{path}: arch.hparams.n_embed is a list (a codebook size per depth), which only "
                              "separate codebooks allow; image-tokenizer's residual quantizer shares one codebook")
    if not _field(hp, "arch.hparams.shared_codebook", path, bool):
        raise ConversionError(f"{path}: arch.hparams.shared_codebook is false: a separate codebook at each depth, "
                              "which image-tokenizer's residual quantizer (one codebook shared across depth) cannot hold")
    args = {"n_embed": _field(hp, "arch.hparams.n_embed", path, int),
            "embed_dim": _field(hp, "arch.hparams.embed_dim", path, int),
            "latent_shape": _int_triple(hp, "arch.hparams.latent_shape", path),
            "code_shape": _int_triple(hp, "arch.hparams.code_shape", path)}
    (lh, lw, ld), (ch, cw, depth) = args["latent_shape"], args["code_shape"]
    if (lh, lw) != (ch, cw):
        raise ConversionError(f"{path}: arch.hparams.code_shape {args['code_shape']} groups several latent positions "
                              f"(latent_shape {args['latent_shape']}) into one code, which is not supported")
    if ld != args["embed_dim"]:
        raise ConversionError(f"{path}: arch.hparams.latent_shape[2] {ld} must be arch.hparams.embed_dim "
                              f"{args['embed_dim']} (the quantizer works on quant_conv's output)")
    if depth > MAX_DEPTH:
        raise ConversionError(f"{path}: arch.hparams.code_shape gives depth {depth}, over the limit of {MAX_DEPTH}")
    for key, expected in (("double_z", False), ("in_channels", 3), ("out_ch", 3), ("resamp_with_conv", True),
                          ("give_pre_end", False)):
        if dd.get(key, expected) != expected:
            raise ConversionError(f"{path}: arch.ddconfig.{key} is {shorten(dd[key])}, expected {expected!r}")
    for key in ("ch", "num_res_blocks", "z_channels", "resolution"):
        args[key] = _field(dd, f"arch.ddconfig.{key}", path, int)
    for key in ("ch_mult", "attn_resolutions"):
        args[key] = tuple(_field(dd, f"arch.ddconfig.{key}", path, list))
    args["dropout"] = float(_field(dd, "arch.ddconfig.dropout", path, (int, float), 0.0))
    side = args["resolution"] // 2 ** (len(args["ch_mult"]) - 1)
    if (lh, lw) != (side, side):
        raise ConversionError(f"{path}: arch.hparams.latent_shape {args['latent_shape']} disagrees with arch.ddconfig: "
                              f"resolution {args['resolution']} over {len(args['ch_mult'])} levels gives {side}x{side}")
    return args


def checkpoint_state(path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(model.pt's `state_dict`, the names of the checkpoint's other entries); anything else is refused."""
    return nested_state_dict(path, "an RQ-VAE checkpoint")


def shared_codebook(state: dict[str, torch.Tensor], args: dict[str, Any], checkpoint: Path, yaml_path: Path) -> torch.Tensor:
    """The codebook without its padding row, after checking that there is one [n_embed + 1, embed_dim] copy per
    depth and that the copies are equal (removed from `state`)."""
    found = {int(m[1]): key for key in state if (m := CODEBOOK.fullmatch(key))}
    depth = args["code_shape"][2]
    if sorted(found) != list(range(depth)):
        raise ConversionError(f"{yaml_path}: arch.hparams.code_shape gives depth {depth}, but {checkpoint.name} holds "
                              f"{len(found)} codebooks (quantizer.codebooks.{{i}}.weight, i = {shorten(sorted(found))})")
    expected = (args["n_embed"] + 1, args["embed_dim"])
    codebooks = [state.pop(found[i]) for i in range(depth)]
    for i, codebook in enumerate(codebooks):
        if tuple(codebook.shape) != expected:
            raise ConversionError(f"{checkpoint}: quantizer.codebooks.{i}.weight has shape {tuple(codebook.shape)}; "
                                  f"arch.hparams gives [n_embed + 1, embed_dim] = {list(expected)} (the last row is padding)")
        if not torch.equal(codebook, codebooks[0]):
            raise ConversionError(f"{checkpoint}: quantizer.codebooks.{i}.weight differs from quantizer.codebooks.0.weight "
                                  f"although {yaml_path.name} sets arch.hparams.shared_codebook")
    return codebooks[0][:-1]


def load(path: Path, resolution: int | None = None) -> Converted:
    files = find_files(path)
    if files is None:
        raise ConversionError(f"{path}: an RQ-VAE release is a folder holding {CHECKPOINT} and {CONFIG} (or a .pt "
                              f"with {CONFIG} beside it)")
    checkpoint, yaml_path = files
    args = read_arch(yaml_path)
    state, others = checkpoint_state(checkpoint)
    codebook = shared_codebook(state, args, checkpoint, yaml_path)
    buffers = sum(1 for k in state if k.startswith("quantizer."))
    weights = rename_keys(state, RULES, checkpoint)
    depth = args["code_shape"][2]
    notice(f"{checkpoint.name}: converting state_dict (the weights their load_model reads); dropped: the codebook's "
           f"padding row, {depth - 1} repeated copies of the shared codebook, {buffers} EMA buffers (training only); "
           f"other entries not read: {', '.join(others) or 'none'}")
    config = ImageTokenizerConfig(
        resolution=args["resolution"], ch=args["ch"], ch_mult=args["ch_mult"], num_res_blocks=args["num_res_blocks"],
        attn_resolutions=args["attn_resolutions"], z_channels=args["z_channels"], dropout=args["dropout"],
        quantizer=QuantizerConfig(kind="residual", codebook_size=args["n_embed"], codebook_dim=args["embed_dim"],
                                  depth=depth, distance="l2"),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bilinear",  # [-1, 1]
                                          alpha_background=ALPHA_DROPPED),
    )
    return Converted(at_resolution(config, resolution), weights, codebook, checkpoint, {
        "license": LICENSE,
        "ids": f"RQ-VAE ids [h, w, depth {depth}]: at each position, {depth} rows of the one shared "
        f"{args['n_embed']:,}-entry codebook, each the nearest (L2) code of what the earlier ones left; their vectors "
        "sum to the feature. Flat: positions row-major, a position's depth codes together, depth 0 first",
        "pairs_with": "RQ-Transformer (kakaobrain), which predicts a position's depth codes together, or an "
        "ImagePrior / transformers causal LM trained on the flat ids",
    })
