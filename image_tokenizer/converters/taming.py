"""taming-transformers VQGAN: a Lightning `.ckpt` plus its `config.yaml` (model.params: embed_dim, n_embed, ddconfig).

Our encoder/decoder use taming's parameter names, so the weights map one to one; the `loss.*` entries (LPIPS
and the discriminator) are dropped. Gumbel and `remap` variants are refused: their ids mean something else.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError, shorten
from ..safe_paths import inside
from .common import (
    ALPHA_DROPPED,
    Converted,
    at_resolution,
    load_pickled_checkpoint,
    read_yaml,
    rename_keys,
    require,
    take_codebook,
)

NAME = "taming"
SUPPORTED_TARGET = "taming.models.vqgan.VQModel"
LICENSE = "MIT (taming-transformers code and released VQGAN weights, CompVis)"


def find_files(path: Path) -> tuple[Path, Path] | None:
    """(checkpoint, config.yaml) for a taming log folder, a folder holding both, or a .ckpt with a YAML beside it
    (or in the log folder's configs/, for a .ckpt in its checkpoints/)."""
    if path.is_file():
        if path.suffix != ".ckpt":
            return None
        beside = [path.parent / "config.yaml", path.parent / "model.yaml", *sorted(path.parent.glob("*.yaml"))]
        in_log = sorted((path.parent.parent / "configs").glob("*project.yaml"))
        config = _first_file(beside, path.parent) or _first_file(in_log, path.parent.parent)
        return (path, config) if config else None
    checkpoints = [path / "checkpoints" / "last.ckpt"] + sorted(path.glob("*.ckpt")) + sorted(path.glob("checkpoints/*.ckpt"))
    configs = sorted((path / "configs").glob("*project.yaml")) + [path / "config.yaml", path / "model.yaml"]
    configs += sorted(path.glob("*.yaml"))
    checkpoint, config = _first_file(checkpoints, path), _first_file(configs, path)
    return (checkpoint, config) if checkpoint and config else None


def _first_file(candidates: list[Path], root: Path) -> Path | None:
    """The first candidate that is a file, refused if it lies outside `root` (a symlink out of the folder)."""
    found = next((c for c in candidates if c.is_file()), None)
    return None if found is None else inside(root, found)


def detect(path: Path) -> bool:
    return find_files(path) is not None


def config_from_yaml(path: Path) -> ImageTokenizerConfig:
    data = read_yaml(path)
    model = data.get("model")
    if not isinstance(model, dict):
        raise ConversionError(f"{path}: no 'model' section; a taming config.yaml has model.target and model.params")
    target = model.get("target", "")
    if "Gumbel" in str(target):
        raise ConversionError(f"{path}: model.target {shorten(target)} is taming's Gumbel-softmax VQGAN, which is not supported")
    if target != SUPPORTED_TARGET:
        raise ConversionError(f"{path}: model.target {shorten(target)} is not supported; only {SUPPORTED_TARGET}")
    params = require(model, "params", path, dict)
    if params.get("remap"):
        raise ConversionError(
            f"{path}: model.params.remap is set ({shorten(params['remap'])}): remapped ids index a subset of the codebook, "
            "which is not supported"
        )
    dd = require(params, "ddconfig", path, dict)
    if dd.get("double_z", False):
        raise ConversionError(f"{path}: ddconfig.double_z is true, which a VQGAN never uses")
    return ImageTokenizerConfig(
        resolution=require(dd, "resolution", path, int),
        in_channels=require(dd, "in_channels", path, int),
        out_channels=require(dd, "out_ch", path, int),
        ch=require(dd, "ch", path, int),
        ch_mult=tuple(require(dd, "ch_mult", path, list)),
        num_res_blocks=require(dd, "num_res_blocks", path, int),
        attn_resolutions=tuple(require(dd, "attn_resolutions", path, list)),
        z_channels=require(dd, "z_channels", path, int),
        dropout=float(dd.get("dropout", 0.0)),
        quantizer=QuantizerConfig(
            codebook_size=require(params, "n_embed", path, int),
            codebook_dim=require(params, "embed_dim", path, int),
            l2_normalize=False,
        ),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bicubic",  # [-1, 1] input
                                          alpha_background=ALPHA_DROPPED),
    )


def load(path: Path, resolution: int | None = None) -> Converted:
    files = find_files(path)
    if files is None:
        raise ConversionError(f"{path}: a taming VQGAN needs a .ckpt and its config.yaml (model.params.ddconfig)")
    checkpoint_path, yaml_path = files
    config = at_resolution(config_from_yaml(yaml_path), resolution)
    checkpoint = load_pickled_checkpoint(checkpoint_path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConversionError(f"{checkpoint_path}: no state_dict of tensors")
    rules = [
        (r"loss\..*", None),  # LPIPS and discriminator: training only
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"(encoder|decoder|quant_conv|post_quant_conv)\..*", r"\g<0>"),
    ]
    weights = rename_keys(state, rules, checkpoint_path)
    codebook = take_codebook(weights, checkpoint_path)
    return Converted(config, weights, codebook, checkpoint_path, {
        "license": LICENSE,
        "ids": "indices into the VQGAN codebook (n_embed), row-major, as taming's cond_transformer sees them",
        "pairs_with": "taming's own GPT (Net2NetTransformer) or a transformers causal LM trained on these ids "
        "(ImagePrior)",
    })
