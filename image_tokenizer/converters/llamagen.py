"""LlamaGen's VQ tokenizers (VQ-8, VQ-16): a `.pt` holding `ema`, `model` or `state_dict`, plus its ModelArgs.

ModelArgs (codebook_size, codebook_embed_dim, codebook_l2_norm, encoder_ch_mult, decoder_ch_mult, z_channels)
come from a config.json beside the weights when there is one (as PyTorchModelHubMixin writes it), and are
otherwise read off the tensor shapes, with LlamaGen's default codebook_l2_norm=True; a config that disagrees
with the weights is refused, naming the field. Codes and latents are l2-normalised before the lookup, as in
LlamaGen. Keys: `conv_blocks.{i}.res/attn` per level, `mid.{0,1,2}`; the decoder's levels lowest resolution
first. `quantize.codebook_used` (a usage buffer) is dropped. Also reads the original Janus checkpoints, whose
`gen_vision_model.*` weights are this layout.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError, shorten
from ..textfiles import read_json_object
from .common import (
    ALPHA_DROPPED,
    Converted,
    at_resolution,
    attention_at_lowest_level,
    is_state_dict,
    load_pickled_checkpoint,
    load_weights_file,
    rename_keys,
    source_file,
    take_codebook,
)

NAME = "llamagen"
LICENSE = "MIT (LlamaGen code and VQ weights, FoundationVision); check the source repository's license"
STATE_KEYS = ("ema", "model", "state_dict")  # LlamaGen's own loading order
PREFIXES = ("", "gen_vision_model.", "module.")
MODEL_ARGS = {"codebook_size", "codebook_embed_dim", "codebook_l2_norm", "encoder_ch_mult", "decoder_ch_mult", "z_channels"}
DEFAULT_RESOLUTION = 256  # class-conditional LlamaGen; its text-to-image models use 384 or 512 (pass resolution=)


def _files(path: Path) -> tuple[Path, Path | None] | None:
    """(weights, config.json or None) of a checkpoint file or a folder; both must lie inside the source's folder."""
    if path.is_file():
        if path.suffix not in (".pt", ".pth", ".bin", ".safetensors"):
            return None
        config = path.parent / "config.json"
        return path, source_file(path, config) if config.is_file() else None
    for name in ("model.safetensors", "pytorch_model.bin", *sorted(p.name for p in path.glob("*.pt"))):
        if (path / name).is_file():
            config = path / "config.json"
            return source_file(path, path / name), source_file(path, config) if config.is_file() else None
    return None


def _state_dict(weights_file: Path) -> dict[str, torch.Tensor]:
    if weights_file.suffix == ".safetensors":
        state = load_weights_file(weights_file)
    else:
        checkpoint = load_pickled_checkpoint(weights_file)
        if not isinstance(checkpoint, dict):
            raise ConversionError(f"{weights_file}: expected a dict holding one of {STATE_KEYS}")
        key = next((k for k in STATE_KEYS if k in checkpoint), None)
        state = checkpoint[key] if key else checkpoint
        if not is_state_dict(state):
            raise ConversionError(f"{weights_file}: no state dict (tensors by name) under {STATE_KEYS}")
    for prefix in PREFIXES:
        if f"{prefix}quantize.embedding.weight" in state:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    raise ConversionError(f"{weights_file}: no 'quantize.embedding.weight' (the codebook): not a LlamaGen VQ checkpoint")


def detect(path: Path) -> bool:
    files = _files(path)
    if files is None or files[0].suffix == ".safetensors" and files[1] is None:
        return False
    if files[1] is not None:
        data = read_json_object(files[1], ConversionError)
        return bool(MODEL_ARGS & set(data)) and "model_type" not in data and "_class_name" not in data
    return files[0].suffix in (".pt", ".pth")


def model_args_from_shapes(state: dict[str, torch.Tensor], where: Path) -> dict:
    """LlamaGen's ModelArgs read off the weights (codebook_l2_norm cannot be seen there: LlamaGen's default, True)."""
    def width(prefix: str, level: int) -> int:
        key = f"{prefix}.conv_blocks.{level}.res.0.conv1.weight"
        if key not in state:
            raise ConversionError(f"{where}: key {key!r} is missing")
        return state[key].shape[0]

    levels = len({k.split(".")[2] for k in state if k.startswith("encoder.conv_blocks.")})
    ch = state["encoder.conv_in.weight"].shape[0]
    codes = state["quantize.embedding.weight"]
    return {
        "codebook_size": codes.shape[0],
        "codebook_embed_dim": codes.shape[1],
        "codebook_l2_norm": True,
        "encoder_ch_mult": [width("encoder", i) // ch for i in range(levels)],
        "decoder_ch_mult": [width("decoder", levels - 1 - i) // ch for i in range(levels)],
        "z_channels": state["quant_conv.weight"].shape[1],
        "ch": ch,
        "num_res_blocks": len({k.split(".")[4] for k in state if k.startswith("encoder.conv_blocks.0.res.")}),
    }


def _checked_args(state: dict[str, torch.Tensor], weights_file: Path, config_file: Path | None) -> dict:
    args = model_args_from_shapes(state, weights_file)
    if config_file is None:
        return args
    given = read_json_object(config_file, ConversionError)
    for field in ("codebook_size", "codebook_embed_dim", "encoder_ch_mult", "decoder_ch_mult", "z_channels"):
        if field in given and given[field] != args[field]:
            raise ConversionError(
                f"{config_file}: {field} is {shorten(given[field])} but the weights in {weights_file.name} have {shorten(args[field])}"
            )
    l2 = given.get("codebook_l2_norm", True)
    if not isinstance(l2, bool):
        raise ConversionError(f"{config_file}: codebook_l2_norm must be true or false, got {shorten(l2)}")
    return {**args, "codebook_l2_norm": l2}


def load(path: Path, resolution: int | None = None) -> Converted:
    files = _files(path)
    if files is None:
        raise ConversionError(f"{path}: a LlamaGen VQ needs a .pt checkpoint (or model.safetensors with config.json)")
    weights_file, config_file = files
    state = _state_dict(weights_file)
    try:
        args = _checked_args(state, weights_file, config_file)
    except (KeyError, IndexError) as error:
        raise ConversionError(f"{weights_file}: key {error} is missing: not a LlamaGen VQ checkpoint") from None
    levels = len(args["encoder_ch_mult"])
    side = resolution or DEFAULT_RESOLUTION
    config = ImageTokenizerConfig(
        resolution=side,
        ch=args["ch"],
        ch_mult=tuple(args["encoder_ch_mult"]),
        decoder_ch_mult=tuple(args["decoder_ch_mult"]) if args["decoder_ch_mult"] != args["encoder_ch_mult"] else None,
        num_res_blocks=args["num_res_blocks"],
        attn_resolutions=attention_at_lowest_level(side, levels),
        z_channels=args["z_channels"],
        quantizer=QuantizerConfig(
            codebook_size=args["codebook_size"], codebook_dim=args["codebook_embed_dim"],
            l2_normalize=args["codebook_l2_norm"],
        ),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bicubic",  # [-1, 1]
                                          alpha_background=ALPHA_DROPPED),
    )
    mid = {"0": "block_1", "1": "attn_1", "2": "block_2"}
    rules = [
        (r"quantize\.codebook_used", None),  # a training-time usage buffer
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"(encoder|decoder)\.mid\.([012])\.(.*)", lambda m: f"{m[1]}.mid.{mid[m[2]]}.{m[3]}"),
        (r"encoder\.conv_blocks\.(\d+)\.res\.(.*)", r"encoder.down.\1.block.\2"),
        (r"encoder\.conv_blocks\.(\d+)\.(attn|downsample)\.(.*)", r"encoder.down.\1.\2.\3"),
        (r"decoder\.conv_blocks\.(\d+)\.res\.(.*)", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}"),
        (r"decoder\.conv_blocks\.(\d+)\.(attn|upsample)\.(.*)", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.{m[2]}.{m[3]}"),
        (r"(encoder|decoder|quant_conv|post_quant_conv)\..*", r"\g<0>"),
    ]
    weights = rename_keys(state, rules, weights_file)
    codebook = take_codebook(weights, weights_file)
    return Converted(at_resolution(config, resolution), weights, codebook, weights_file, {
        "license": LICENSE,
        "ids": "LlamaGen image ids: indices into the VQ codebook (16,384 codes for VQ-16), row-major, which "
        "LlamaGen's GPT predicts directly (its vocabulary is the codebook)",
        "pairs_with": "LlamaGen's GPT-B/L/XL (c2i, t2i), or an ImagePrior / transformers causal LM trained on these ids",
    })
