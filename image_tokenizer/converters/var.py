"""VAR (FoundationVision): `vae_ch160v4096z32.pth`, a plain torch.save(state_dict) of their multi-scale VQVAE, or a
folder holding it.

VAR's encoder and decoder are taming's VQGAN (architecture "vqgan"; attention in the last level and the middle,
its one `qkv` conv split into our q, k, v) with 3x3 quant_conv and post_quant_conv (quant_conv_kernel_size 3).
The quantizer is kind "multiscale": one L2 lookup per scale in the shared codebook `quantize.embedding.weight`,
each scale's codes bicubic-upsampled and passed through phi, VAR's `quantize.quant_resi` convs (`qresi_ls.{j}` when
partially shared, `qresi` when shared, `{j}` when not; none when quant_resi was 0), which our `phi_schedule` shares
as theirs does. The file does not record the scale schedule, only how many scales the model was trained with
(the rows of `quantize.ema_vocab_hit_SV`, a training statistic that is dropped): 10 is the released schedule
1, 2, 3, 4, 5, 6, 8, 10, 13, 16 (256 px); any other count needs `scales` from the user, as does another schedule of
10 (VAR-d36's 512 px: 1, 2, 3, 4, 6, 9, 13, 18, 24, 32). Not in the file either, so VQVAE's defaults, which the
release uses: quant_resi 0.5 and using_znorm false (L2). The resolution is the last scale times the downsampling.

VAR's data loader resizes the shorter side to 1.125 x the resolution with Lanczos and centre-crops; ours resizes
to the resolution itself (Lanczos, centre crop), so an image of another size is framed slightly wider than theirs.
Ids are identical for the same pixels at the model's resolution, in their [-1, 1] normalisation (x / 255 * 2 - 1).
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import ImageTokenizerConfig, PreprocessingConfig, QuantizerConfig
from ..errors import ConfigError, ConversionError, shorten
from ..layouts import scales_problem
from ..quantizer_config import VAR_PHI_RATIO
from .common import ALPHA_DROPPED, Converted, load_weights_file, rename_keys, source_file, take_codebook
from .lightning import encoder_shapes, notice
from .tensor_budget import MAX_PICKLE_BYTES, check_checkpoint_zip, read_small_entry

NAME = "var"
LICENSE = "MIT (FoundationVision VAR repository and weights); check the weights' Hub model card"
RELEASED_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
HITS = "quantize.ema_vocab_hit_SV"  # [scales, codebook size]: per-scale code usage, kept by training only
CODEBOOK = "quantize.embedding.weight"
SIGNATURE = (HITS, CODEBOOK, "quant_conv.weight", "post_quant_conv.weight", "encoder.conv_in.weight")  # detection
PHI = re.compile(r"quantize\.quant_resi\.(?:qresi_ls\.(\d{1,6})|qresi|(\d{1,6}))\.(weight|bias)")  # int() refuses 4,300 digits


def detect(path: Path) -> bool:
    return bool(_candidates(path))


def load(path: Path, resolution: int | None = None, scales: Sequence[int] | None = None) -> Converted:
    weights_file = _weights_file(path)
    state = load_weights_file(weights_file)
    for key in (HITS, CODEBOOK, "quant_conv.weight"):
        if key not in state:
            raise ConversionError(f"{weights_file}: key {key!r} is missing: not a VAR VQVAE state dict")
    hits, codebook = state[HITS], state[CODEBOOK]
    if hits.ndim != 2 or codebook.ndim != 2 or hits.shape[1] != codebook.shape[0]:
        raise ConversionError(f"{weights_file}: field {HITS!r} of shape {list(hits.shape)} must be [scales, codebook "
                              f"size] for the codebook {CODEBOOK!r} of shape {list(codebook.shape)}")
    schedule = _schedule(scales, hits.shape[0], weights_file)
    config = _config(state, weights_file, schedule, resolution)
    phi_names = _phi_names(state, weights_file, config.quantizer.phi_convs)
    notice(f"{weights_file.name}: skipped the training-only entry {HITS} (per-scale code usage)")
    rules = [
        (re.escape(CODEBOOK), "quantizer.codebook"),
        (re.escape(HITS), None),  # dropped on purpose: training statistics, not weights
        (PHI.pattern, lambda m: phi_names[m[0]]),
        (r"(encoder|decoder|quant_conv|post_quant_conv)\..*", r"\g<0>"),
    ]
    weights = rename_keys(_split_qkv(state, weights_file), rules, weights_file)
    codebook = take_codebook(weights, weights_file)
    sides = ", ".join(f"{p}x{p}" for p in schedule)
    return Converted(config, weights, codebook, weights_file, {
        "license": LICENSE,
        "ids": f"VAR ids: {config.layout.ids_per_image} per image, {len(schedule)} scales ({sides}) concatenated coarse "
        f"to fine, row-major inside each; each id is a row of the {codebook.shape[0]:,}-entry codebook that all "
        "scales share, nearest (L2) to what the coarser scales left",
        "pairs_with": "VAR's class-conditional transformers (VAR-d16 to d30 at 256 px on the released scales; VAR-d36 "
        "at 512 px on scales 1,2,3,4,6,9,13,18,24,32), or an ImagePrior / transformers causal LM trained on these ids",
    })


def _schedule(scales: Sequence[int] | None, trained: int, where: Path) -> tuple[int, ...]:
    """The user's scales, else the released ones; either must have as many scales as the model was trained with."""
    if scales is None:
        if trained != len(RELEASED_SCALES):
            raise ConversionError(
                f"{where}: field {HITS!r} says the model was trained with {trained} scales, not the released "
                f"{len(RELEASED_SCALES)} ({','.join(map(str, RELEASED_SCALES))}); give its {trained} scale sides, "
                "coarse to fine, with --scales p1,p2,... (scales= in Python)")
        return RELEASED_SCALES
    scales = tuple(scales)
    problem = scales_problem(list(scales))
    if problem:
        raise ConversionError(f"{where}: --scales: {problem}")
    if len(scales) != trained:
        raise ConversionError(
            f"{where}: the schedule {','.join(map(str, scales))} has {len(scales)} scales but field {HITS!r} says the "
            f"model was trained with {trained}; give {trained} scale sides, coarse to fine")
    return scales


def _config(state: dict[str, torch.Tensor], where: Path, scales: tuple[int, ...],
            resolution: int | None) -> ImageTokenizerConfig:
    shapes = encoder_shapes(state, where)
    levels = len(shapes["ch_mult"])
    side = scales[-1] * 2 ** (levels - 1)
    if resolution and resolution != side:
        raise ConversionError(f"{where}: resolution {resolution} disagrees with the scales: the last scale {scales[-1]} "
                              f"x the downsampling {2 ** (levels - 1)} is {side}; give scales ending in the grid side")
    codebook, quant_conv = state[CODEBOOK], state["quant_conv.weight"]
    if codebook.shape[1] != shapes["z_channels"]:
        raise ConversionError(f"{where}: the codebook {CODEBOOK!r} has dimension {codebook.shape[1]} but the encoder "
                              f"gives {shapes['z_channels']} channels (encoder.conv_out.weight); VAR quantizes them directly")
    if quant_conv.ndim != 4 or quant_conv.shape[-1] != quant_conv.shape[-2]:
        raise ConversionError(f"{where}: 'quant_conv.weight' of shape {list(quant_conv.shape)} is not a square conv kernel")
    try:
        return _build_config(shapes, state, side, scales)
    except ConfigError as error:  # e.g. scales whose images would be over the size limit: name the file
        raise ConversionError(f"{where}: {error}") from None


def _build_config(shapes: dict[str, Any], state: dict[str, torch.Tensor], side: int,
                  scales: tuple[int, ...]) -> ImageTokenizerConfig:
    codebook, quant_conv = state[CODEBOOK], state["quant_conv.weight"]
    attention = {int(m[1]) for k in state if (m := re.match(r"encoder\.down\.(\d{1,6})\.attn\.", k))}
    phi_indices = [int(m[1] or m[2] or 0) for k in state if (m := PHI.fullmatch(k))]
    phi_convs = max(phi_indices) + 1 if phi_indices else 0  # a gap is named by _phi_names
    return ImageTokenizerConfig(
        resolution=side, ch=shapes["ch"], ch_mult=tuple(shapes["ch_mult"]), num_res_blocks=shapes["num_res_blocks"],
        attn_resolutions=tuple(sorted(side // 2**level for level in attention)), z_channels=shapes["z_channels"],
        use_mid_attention="encoder.mid.attn_1.qkv.weight" in state, quant_conv_kernel_size=quant_conv.shape[-1],
        quantizer=QuantizerConfig(kind="multiscale", codebook_size=codebook.shape[0], codebook_dim=codebook.shape[1],
                                  distance="l2", scales=scales, phi_ratio=VAR_PHI_RATIO if phi_convs else 0.0,
                                  phi_convs=phi_convs),
        preprocessing=PreprocessingConfig(resize_mode="resize_center_crop", resample="lanczos",  # [-1, 1]
                                          alpha_background=ALPHA_DROPPED),
    )


def _phi_names(state: dict[str, torch.Tensor], where: Path, count: int) -> dict[str, str]:
    """VAR's phi keys -> ours (quantizer.phi.{j}); one sharing style, numbered 0..count-1, each with weight and bias."""
    found = {key: m for key in state if (m := PHI.fullmatch(key))}
    styles = {_style(m) for m in found.values()}
    if len(styles) > 1:
        raise ConversionError(f"{where}: the phi convs under 'quantize.quant_resi' mix sharing styles "
                              f"({', '.join(sorted(styles))}); a VQVAE has one")
    style = styles.pop() if styles else "qresi_ls"
    prefix = {"qresi_ls": "quantize.quant_resi.qresi_ls.{}.", "list": "quantize.quant_resi.{}.",
              "qresi": "quantize.quant_resi.qresi."}[style]
    expected = {prefix.format(j) + part: f"quantizer.phi.{j}.{part}" for j in range(count) for part in ("weight", "bias")}
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ConversionError(f"{where}: the phi convs 'quantize.quant_resi.*' must be numbered 0..{count - 1}, each "
                              f"with weight and bias (up to the highest index found); missing {shorten(missing[0])}")
    return expected


def _style(m: re.Match) -> str:
    """How VAR shared the phi convs: qresi_ls.{j} (PhiPartiallyShared), qresi (PhiShared) or {j} (PhiNonShared)."""
    return "qresi_ls" if m[1] is not None else "list" if m[2] is not None else "qresi"


def _split_qkv(state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    """VAR's attention has one 1x1 `qkv` conv of 3C outputs (q, k, v in that order); ours has three."""
    split = {}
    for key, tensor in state.items():
        m = re.fullmatch(r"((?:encoder|decoder)\..*)\.qkv\.(weight|bias)", key)
        if m is None:
            split[key] = tensor
            continue
        if tensor.ndim < 1 or tensor.shape[0] % 3:
            raise ConversionError(f"{where}: {shorten(key)} of shape {list(tensor.shape)} does not hold q, k and v")
        for name, part in zip("qkv", tensor.chunk(3)):
            split[f"{m[1]}.{name}.{m[2]}"] = part
    return split


# ----- finding the file -----
def _weights_file(path: Path) -> Path:
    found = _candidates(path)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConversionError(f"{path}: no VAR VQVAE .pth (a state dict with {HITS!r} and 'quantize.quant_resi.*'); "
                              "name the file itself")
    raise ConversionError(f"{path}: several VAR VQVAE files ({', '.join(f.name for f in found[:5])}); name one of them")


def _candidates(path: Path) -> list[Path]:
    """The .pth files (the file itself, or those in the folder) whose pickled keys are VAR VQVAE's, read from the
    pickle's opcodes without unpickling or reading a tensor."""
    files = [path] if path.is_file() else sorted(path.glob("*.pth")) if path.is_dir() else []
    inside = [source_file(path, f) for f in files if f.suffix == ".pth"]  # a link out of the folder is refused first
    return [f for f in inside if _is_var_state_dict(f)]


def _is_var_state_dict(path: Path) -> bool:
    names = _pickled_strings(path, SIGNATURE)
    return set(SIGNATURE) <= names


def _pickled_strings(path: Path, wanted: tuple[str, ...]) -> set[str]:
    """Which of `wanted` are strings in a torch.save zip's data.pkl (where the keys are), walked opcode by opcode:
    nothing is executed, and the zip's entries pass tensor_budget's checks first. Empty for anything else."""
    try:
        check_checkpoint_zip(path)
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                return set()
            data = read_small_entry(path, archive, pickles[0], MAX_PICKLE_BYTES)
        return {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str) and arg in wanted}
    except (ConversionError, OSError, zipfile.BadZipFile, ValueError, EOFError):
        return set()

