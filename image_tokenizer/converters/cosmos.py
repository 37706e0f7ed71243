"""NVIDIA Cosmos discrete image tokenizers (Cosmos-Tokenizer-DI8x8 / DI16x16): encoder.jit and decoder.jit.

The archives are TorchScript exports of `DiscreteImageTokenizer.encoder_jit()` (encoder, quant_conv, quantizer)
and `decoder_jit()` (inv_quant, post_quant_conv, decoder). Their tensors are read without running their code
(converters/torchscript.py), and the architecture is recovered from the tensors' names and shapes: widths and
levels from the convolutions, the wavelet patch size from conv_in's input channels (3 x patch_size^2), which
levels halve from their `downsample` convs, where attention sits from the `attn` blocks, the FSQ levels from the
quantizer's `_levels` buffer. Not read from the archives, because TorchScript inlines them into its code: GroupNorm
has 32 groups and eps 1e-6 (Cosmos's `Normalize`), and the wavelet is Haar (checked against the `wavelets` buffer).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import torch

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConversionError, shorten
from .common import ALPHA_DROPPED, Converted, source_file
from .torchscript import ScriptedTree, read_torchscript

NAME = "cosmos"
ENCODER_FILE, DECODER_FILE = "encoder.jit", "decoder.jit"
ENCODER_PARTS = ("encoder", "quant_conv", "quantizer")  # DiscreteImageTokenizer.encoder_jit()
DECODER_PARTS = ("inv_quant", "post_quant_conv", "decoder")  # DiscreteImageTokenizer.decoder_jit()
LICENSE = "NVIDIA Open Model License (Cosmos tokenizer weights); check the source repository's license"
RESOLUTION = 256  # the reference size: DI8x8 gives 32 x 32 ids there, DI16x16 16 x 16
HAAR = 1 / math.sqrt(2)
FSQ_BUFFERS = ("_levels", "_basis", "implicit_codebook")  # all implied by the levels: read, then not kept


def detect(path: Path) -> bool:
    return path.is_dir() and (path / ENCODER_FILE).is_file() and (path / DECODER_FILE).is_file()


def load(path: Path, resolution: int | None = None) -> Converted:
    if not detect(path):
        raise ConversionError(f"{path}: a Cosmos tokenizer is a folder with {ENCODER_FILE} and {DECODER_FILE}")
    encoder = read_part(source_file(path, path / ENCODER_FILE), ENCODER_PARTS, "encoder_jit()")
    decoder = read_part(source_file(path, path / DECODER_FILE), DECODER_PARTS, "decoder_jit()")
    levels = fsq_levels(encoder, decoder, path)
    config = ImageTokenizerConfig(
        architecture="cosmos", resolution=resolution or RESOLUTION, **shape(encoder.tensors, path / ENCODER_FILE),
        quantizer=QuantizerConfig(kind="fsq", levels=levels),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="bicubic",  # x / 127.5 - 1
                                          alpha_background=ALPHA_DROPPED),
    )
    config = place_attention(config, encoder.tensors, decoder.tensors, path)
    weights = {k: v for k, v in {**encoder.tensors, **decoder.tensors}.items()
               if k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv."))
               and not k.startswith(("encoder.patcher.", "decoder.unpatcher."))}
    return Converted(config, weights, None, path / ENCODER_FILE, {
        "license": LICENSE,
        "ids": f"Cosmos FSQ ids: each token's {len(levels)} channels are quantised to levels {list(levels)}, digit d_i in "
        "0..L_i-1 (code (d_i - L_i//2) / (L_i//2)); id = sum_i d_i * prod_{j<i} L_j, channel 0 the least "
        f"significant digit ({math.prod(levels):,} ids), row-major over the grid, as Cosmos's encoder returns them",
        "pairs_with": "an ImagePrior trained on these ids (Cosmos's own world models read the tokenizer's ids directly)",
    })


def read_part(file: Path, parts: tuple[str, ...], exported_by: str) -> ScriptedTree:
    """One archive of the pair, checked to be the part it is named for."""
    tree = read_torchscript(file)
    children = sorted(k for k in tree.classes if k and "." not in k)
    if children != sorted(parts):
        raise ConversionError(
            f"{file}: not a Cosmos {file.stem} archive: its modules are {children}, where {exported_by} has "
            f"{sorted(parts)}. Cosmos ships {ENCODER_FILE} and {DECODER_FILE} as an encoder/decoder pair")
    return tree


def fsq_levels(encoder: ScriptedTree, decoder: ScriptedTree, path: Path) -> tuple[int, ...]:
    """The FSQ levels, the same in both archives; other quantizers (VQ, LFQ, residual FSQ) are refused by name."""
    found = []
    for tree, key, file in ((encoder, "quantizer", ENCODER_FILE), (decoder, "inv_quant.quantizer", DECODER_FILE)):
        if f"{key}._levels" not in tree.tensors:
            kind = tree.classes.get(key, "?").rsplit(".", 1)[-1]
            raise ConversionError(f"{path / file}: the quantizer is {kind}, not FSQ (no {key}._levels); only Cosmos's "
                                  "FSQ tokenizers (DI8x8, DI16x16) are supported")
        if f"{key}.project_in.weight" in tree.tensors:
            raise ConversionError(f"{path / file}: the FSQ has projections ({key}.project_in), which Cosmos's DI "
                                  "tokenizers do not; not supported")
        found.append(tuple(int(v) for v in tree.tensors[f"{key}._levels"].tolist()))
        unknown = sorted(k for k in tree.tensors if k.startswith(f"{key}.") and k.rsplit(".", 1)[-1] not in FSQ_BUFFERS)
        if unknown:
            raise ConversionError(f"{path / file}: unexpected key {shorten(unknown[0])}, which no part of Cosmos's FSQ explains")
    if found[0] != found[1]:
        raise ConversionError(f"{path}: {ENCODER_FILE} has FSQ levels {list(found[0])} but {DECODER_FILE} "
                              f"{list(found[1])}: the two files are not a pair")
    for tree, prefix, file in ((encoder, "encoder.patcher", ENCODER_FILE), (decoder, "decoder.unpatcher", DECODER_FILE)):
        wavelets = tree.tensors.get(f"{prefix}.wavelets")
        if wavelets is None or not torch.allclose(wavelets.float(), torch.full((2,), HAAR), atol=1e-2):
            raise ConversionError(f"{path / file}: {prefix}.wavelets is {wavelets}, not the Haar wavelet "
                                  f"[{HAAR:.4f}, {HAAR:.4f}]; only Haar patching is supported")
    return found[0]


def count(tensors: dict[str, torch.Tensor], pattern: str) -> int:
    """How many distinct values the (\\d+) group of `pattern` takes among the keys."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in tensors if (m := regex.fullmatch(k))})


def shape(tensors: dict[str, torch.Tensor], file: Path) -> dict:
    """ImageTokenizerConfig fields from the encoder's tensor shapes."""
    try:
        levels = count(tensors, r"encoder\.down\.(\d+)\..*")
        ch, in_channels = tensors["encoder.conv_in.weight"].shape[:2]
        widths = [tensors[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
        halving = [f"encoder.down.{i}.downsample.conv.weight" in tensors for i in range(levels)]
        fields = {
            "ch": ch, "ch_mult": tuple(w // ch for w in widths),
            "num_res_blocks": count(tensors, r"encoder\.down\.0\.block\.(\d+)\..*"),
            "z_channels": tensors["encoder.conv_out.weight"].shape[0],
            "patch_size": math.isqrt(in_channels // 3), "downsample_levels": sum(halving), "norm_groups": 32,
            "use_mid_attention": "encoder.mid.attn_1.q.weight" in tensors,
        }
    except KeyError as error:
        raise ConversionError(f"{file}: tensor {error} is missing from a Cosmos encoder") from None
    if any(w % ch for w in widths) or 3 * fields["patch_size"] ** 2 != in_channels:
        raise ConversionError(f"{file}: widths {widths} or conv_in's {in_channels} input channels fit no Cosmos layout")
    if halving != sorted(halving, reverse=True):
        raise ConversionError(f"{file}: levels {[i for i, h in enumerate(halving) if h]} halve; Cosmos halves the first ones")
    return fields


def place_attention(config: ImageTokenizerConfig, encoder: dict, decoder: dict, path: Path) -> ImageTokenizerConfig:
    """attn_resolutions that put attention exactly at the levels where each archive has it."""
    levels = range(len(config.ch_mult))
    in_encoder = {i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in encoder}
    in_decoder = {i for i in levels if f"decoder.up.{i}.attn.0.q.weight" in decoder}
    sides = {config.level_resolutions[i] for i in in_encoder} | {config.decoder_level_resolutions[i] for i in in_decoder}
    placed = dataclasses.replace(config, attn_resolutions=tuple(sorted(sides)))
    if ({i for i in levels if placed.level_resolutions[i] in sides} != in_encoder
            or {i for i in levels if placed.decoder_level_resolutions[i] in sides} != in_decoder):
        raise ConversionError(f"{path}: attention at encoder levels {sorted(in_encoder)} and decoder levels "
                              f"{sorted(in_decoder)} is no layout Cosmos builds at resolution {config.resolution}")
    return placed
