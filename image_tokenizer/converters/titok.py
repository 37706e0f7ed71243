"""TiTok (bytedance/1d-tokenizer): a PyTorchModelHubMixin folder, config.json (their nested
{experiment, model: {vq_model}, dataset: {preprocessing: {crop_size}}}) and model.safetensors.

An image becomes `num_latent_tokens` ids (the `1d` layout) through a ViT (architecture "titok"); the VQ lookup is
the nearest code, of l2-normalised vectors when `use_l2_norm` (distance "cosine"), else plain l2. Input [0, 1].
Two kinds convert: non-legacy (`is_legacy: false`, `finetune_decoder: false`: the decoder predicts pixels) and the
released legacy L-32/B-64/S-128 (`is_legacy` and `finetune_decoder` true: logits over MaskGIT-VQGAN's 1,024 codes,
decoded by its pixel decoder, whose sizes their titok.py hard-codes and which are read off the weights here).
config.json is read with our bounded JSON reader; `${...}` OmegaConf strings are never evaluated (a field the model
needs that holds one is an error naming it).
"""

from __future__ import annotations

import math
import re
from functools import reduce
from pathlib import Path
from typing import Any

import torch

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError, shorten
from ..vit_config import ViTConfig
from .common import ALPHA_DROPPED, Converted, folder_config, load_weights_file, rename_keys, source_file, take_codebook

NAME = "titok"
LICENSE = "Apache-2.0 (bytedance/1d-tokenizer; check the weights' Hub model card)"
WEIGHTS_NAME = "model.safetensors"
# blocks.py's tables: model size -> (width, layers, heads)
MODEL_SIZES: dict[str, tuple[int, int, int]] = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}
MISSING = object()


def _vq_model(config: dict[str, Any]) -> Any:
    model = config.get("model")
    return model.get("vq_model") if isinstance(model, dict) else None


def detect(path: Path) -> bool:
    vq = _vq_model(folder_config(path)) if path.is_dir() else None
    return isinstance(vq, dict) and "num_latent_tokens" in vq and "vit_enc_model_size" in vq


def field(data: dict[str, Any], dotted: str, where: Path, kind: type, default: Any = MISSING) -> Any:
    """The value at a dotted path of config.json, checked for type; an unresolved `${...}` string is named as such."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            if default is not MISSING:
                return default
            raise ConversionError(f"{where}: field {dotted!r} is missing")
        value = value[part]
    if isinstance(value, str) and value.startswith("${") and kind is not str:
        raise ConversionError(f"{where}: field {dotted!r} is the unresolved OmegaConf interpolation {shorten(value)}; "
                              "image-tokenizer never evaluates them: write its value")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConversionError(f"{where}: field {dotted!r} must be {kind.__name__}, got {shorten(value)}")
    return value


def read_settings(config_path: Path) -> dict[str, Any]:
    """The fields of config.json that define the model, refusing the variants we do not convert."""
    data = folder_config(config_path.parent)
    vq = "model.vq_model."
    settings = {name: field(data, vq + name, config_path, kind) for name, kind in (
        ("codebook_size", int), ("token_size", int), ("use_l2_norm", bool), ("num_latent_tokens", int),
        ("vit_enc_model_size", str), ("vit_dec_model_size", str), ("vit_enc_patch_size", int),
        ("vit_dec_patch_size", int))}
    settings["crop_size"] = field(data, "dataset.preprocessing.crop_size", config_path, int)
    mode = field(data, vq + "quantize_mode", config_path, str, "vq")
    if mode != "vq":
        raise ConversionError(f"{config_path}: model.vq_model.quantize_mode is {shorten(mode)}: continuous (VAE) "
                              "TiTok tokens are not ids; only 'vq' converts")
    legacy = field(data, vq + "is_legacy", config_path, bool, True)
    finetune = field(data, vq + "finetune_decoder", config_path, bool, True)
    if legacy != finetune:
        what = ("a stage-1 model: its decoder predicts MaskGIT-VQGAN proxy codes, not pixels" if legacy else
                "a combination their own code cannot run (a pixel decoder after a decoder that predicts pixels)")
        raise ConversionError(f"{config_path}: model.vq_model.is_legacy is {legacy} but finetune_decoder is {finetune}, "
                              f"{what}; TiTok converts with both true (legacy) or both false")
    settings["legacy"] = legacy
    for part in ("enc", "dec"):
        name = settings[f"vit_{part}_model_size"]
        if name not in MODEL_SIZES:
            raise ConversionError(f"{config_path}: field 'model.vq_model.vit_{part}_model_size' must be one of "
                                  f"{sorted(MODEL_SIZES)}, got {shorten(name)}")
    return settings


def vit_config(settings: dict[str, Any], weights: dict[str, torch.Tensor], paths: tuple[Path, Path],
               proxy_codebook_size: int) -> ViTConfig:
    """The ViT's sizes from the model-size names, checked against the weights: the latent count, each width and
    each depth must be what config.json says."""
    config_path, weights_path = paths
    sizes = {part: MODEL_SIZES[settings[f"vit_{part[:3]}_model_size"]] for part in ("encoder", "decoder")}
    latents = weights.get("latent_tokens")
    if latents is None or latents.ndim != 2:
        raise ConversionError(f"{weights_path}: tensor 'latent_tokens' ([num_latent_tokens, width]) is missing")
    if latents.shape[0] != settings["num_latent_tokens"]:
        raise ConversionError(f"{config_path}: model.vq_model.num_latent_tokens is {settings['num_latent_tokens']}, "
                              f"but {weights_path.name} holds {latents.shape[0]} latent tokens (latent_tokens "
                              f"{list(latents.shape)}); fix the config or use the weights it belongs to")
    for part, (width, layers, _) in sizes.items():
        found_layers = len({m[1] for k in weights if (m := re.match(rf"{part}\.transformer\.(\d+)\.", k))})
        found_width = weights.get(f"{part}.class_embedding", torch.empty(0, 0)).shape[-1]
        if (found_width, found_layers) != (width, layers):
            name = settings[f"vit_{part[:3]}_model_size"]
            raise ConversionError(f"{config_path}: model.vq_model.vit_{part[:3]}_model_size {name!r} means width "
                                  f"{width} and {layers} layers, but the {part} in {weights_path.name} is "
                                  f"{found_width} wide with {found_layers} layers")
    (ew, el, eh), (dw, dl, dh) = sizes["encoder"], sizes["decoder"]
    return ViTConfig(num_latent_tokens=settings["num_latent_tokens"], encoder_width=ew, encoder_layers=el,
                     encoder_heads=eh, decoder_width=dw, decoder_layers=dl, decoder_heads=dh,
                     encoder_patch_size=settings["vit_enc_patch_size"], decoder_patch_size=settings["vit_dec_patch_size"],
                     legacy=settings["legacy"], proxy_codebook_size=proxy_codebook_size)


def pixel_decoder_sizes(weights: dict[str, torch.Tensor], paths: tuple[Path, Path]) -> dict[str, Any]:
    """MaskGIT-VQGAN's decoder sizes (their titok.py hard-codes 128, (1, 1, 2, 2, 4), 2 blocks, 256 channels), read
    off the weights; a legacy checkpoint without them is an error naming both files."""
    config_path, weights_path = paths
    codebook = weights.get("pixel_quantize.embedding.weight")
    levels = {int(m[1]) for k in weights if (m := re.match(r"pixel_decoder\.up\.(\d+)\.", k))}
    if codebook is None or codebook.ndim != 2 or not levels:
        raise ConversionError(f"{weights_path}: no MaskGIT-VQGAN pixel decoder (pixel_decoder.*, "
                              f"pixel_quantize.embedding.weight), which {config_path.name}'s "
                              "model.vq_model.finetune_decoder (true) says a legacy TiTok decodes through; use the "
                              "checkpoint with its pixel decoder")
    widths = []
    for level in range(max(levels) + 1):
        conv = weights.get(f"pixel_decoder.up.{level}.block.0.conv1.weight")
        if conv is None or conv.ndim != 4:
            raise ConversionError(f"{weights_path}: tensor 'pixel_decoder.up.{level}.block.0.conv1.weight' is missing")
        if conv.shape[0] < 1:
            raise ConversionError(f"{weights_path}: tensor 'pixel_decoder.up.{level}.block.0.conv1.weight' has no output "
                                  f"channels (shape {list(conv.shape)})")
        widths.append(conv.shape[0])
    ch = reduce(math.gcd, widths)
    blocks = len({m[1] for k in weights if (m := re.match(r"pixel_decoder\.mid\.(\d+)\.", k))})
    return {"ch": ch, "ch_mult": tuple(w // ch for w in widths), "num_res_blocks": blocks,
            "z_channels": codebook.shape[1], "proxy_codebook_size": codebook.shape[0]}


def load(path: Path, resolution: int | None = None) -> Converted:
    folder = path if path.is_dir() else path.parent
    config_path = source_file(path, folder / "config.json")
    weights_path = source_file(path, folder / WEIGHTS_NAME)
    if not weights_path.is_file():
        raise ConversionError(f"{folder}: no {WEIGHTS_NAME} beside config.json (TiTok's save_pretrained writes both)")
    settings = read_settings(config_path)
    if resolution and resolution != settings["crop_size"]:
        raise ConversionError(f"{config_path}: TiTok's position embeddings fix its resolution at "
                              f"dataset.preprocessing.crop_size {settings['crop_size']}; --resolution {resolution} cannot apply")
    state = load_weights_file(weights_path)
    paths = (config_path, weights_path)
    pixel = pixel_decoder_sizes(state, paths) if settings["legacy"] else {}
    vit = vit_config(settings, state, paths, pixel.pop("proxy_codebook_size", 1024))
    config = ImageTokenizerConfig(
        architecture="titok", resolution=settings["crop_size"], vit=vit, use_quant_conv=False,
        use_post_quant_conv=False, use_mid_attention=False, **pixel,
        quantizer=QuantizerConfig(codebook_size=settings["codebook_size"], codebook_dim=settings["token_size"],
                                  kind="vq", distance="cosine" if settings["use_l2_norm"] else "l2"),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bicubic", image_mean=(0.0, 0.0, 0.0),
                                          image_std=(1.0, 1.0, 1.0), alpha_background=ALPHA_DROPPED),  # [0, 1]
    )
    rules = [
        (r"quantize\.embedding\.weight", "quantizer.codebook"),
        (r"latent_tokens", "encoder.latent_tokens"),
        (r"pixel_quantize\.embedding\.weight", "decoder.pixel_decoder.codebook"),
        (r"pixel_decoder\.(.*)", r"decoder.pixel_decoder.\1"),
        (r"(encoder|decoder)\..*", r"\g<0>"),
    ]
    weights = rename_keys(state, rules, weights_path)
    codebook = take_codebook(weights, weights_path)
    norm = "l2-normalised " if settings["use_l2_norm"] else ""
    return Converted(config, weights, codebook, weights_path, {
        "license": LICENSE,
        "ids": f"TiTok ids: {vit.num_latent_tokens} per image, one 1D sequence (no grid), each the nearest of the "
        f"{settings['codebook_size']:,} {norm}codes to a latent token",
        "pairs_with": "TiTok's MaskGIT generators (ImageBert), or a prior trained on these ids",
    })
