"""Lightning `.ckpt` files beside their LightningCLI yaml, as TencentARC's SEED-Voken publishes Open-MAGVIT2 and IBQ.

The weights are `checkpoint["state_dict"]`; a `.ckpt` without one is not Lightning's and is refused. Training-only
entries (the discriminator and LPIPS under `loss.*`, LitEma's copies under `model_ema.*`) are skipped and named
in one line on stderr. Where the yaml sets `use_ema` (or, without a yaml, where EMA copies exist) the EMA copies
*are* the weights: the publisher evaluates and samples under `ema_scope()`, which copies them into the model.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import ConversionError, shorten
from .common import nested_state_dict, read_yaml, source_file

TRAINING_ONLY = {"loss.": "discriminator and LPIPS", "model_ema.": "EMA copies"}
EMA_PREFIX = "model_ema."


def read_release(
    path: Path, name: str, parts: tuple[str, ...], from_yaml: Callable[[Path], dict[str, Any]],
    infer: Callable[[dict[str, torch.Tensor], Path, dict[str, Any] | None], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path, Path | None]:
    """(model args, inference weights, checkpoint, yaml) of a release: the args from the yaml, checked against what
    `infer` reads off the weights (given the yaml's args), or, without a yaml, inferred and said on stderr."""
    files = find_files(path)
    if files is None:
        raise ConversionError(f"{path}: {name} needs a Lightning .ckpt (and its yaml, when there is one)")
    checkpoint, yaml_path = files
    state = lightning_state_dict(checkpoint)
    given = from_yaml(yaml_path) if yaml_path else None
    inferred = infer(state, checkpoint, given)
    if given is None:
        notice(f"{checkpoint.name}: no yaml beside it; shapes inferred from the weights: {inferred}")
        given = {**inferred, "use_ema": None}
    else:
        check_against_weights(yaml_path, given, inferred, checkpoint)
    return given, inference_weights(state, parts, given["use_ema"], checkpoint), checkpoint, yaml_path


def notice(message: str) -> None:
    """One line on stderr: what a conversion decided that the user should know (inferred shapes, skipped keys)."""
    print(f"image-tokenizer convert: {message}", file=sys.stderr)


def find_files(path: Path) -> tuple[Path, Path | None] | None:
    """(checkpoint, yaml or None) for a `.ckpt` (with a yaml beside it, if any) or a folder holding one; both must
    lie inside the source's folder (a symlink out of it is refused)."""
    if path.is_file():
        if path.suffix != ".ckpt":
            return None
        checkpoint, yaml_path = path, _yaml_for(path, path.parent)
    else:
        checkpoints = sorted(path.glob("*.ckpt")) + sorted(path.glob("checkpoints/*.ckpt"))
        if not checkpoints:
            return None
        checkpoint = source_file(path, checkpoints[0])
        yaml_path = _yaml_for(checkpoint, path) or _yaml_for(checkpoint, path / "configs")
    return checkpoint, None if yaml_path is None else source_file(path, yaml_path)


def _yaml_for(checkpoint: Path, folder: Path) -> Path | None:
    """The yaml of the checkpoint's own name, else the folder's only yaml; None when there is none or a choice."""
    found = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    same_name = [f for f in found if f.stem == checkpoint.stem]
    return same_name[0] if same_name else found[0] if len(found) == 1 else None


def model_section(yaml_path: Path) -> tuple[str, dict[str, Any]]:
    """(class path, init args) of the yaml's `model`, in LightningCLI form (class_path/init_args) or taming's
    (target/params)."""
    model = read_yaml(yaml_path).get("model")
    if not isinstance(model, dict):
        raise ConversionError(f"{yaml_path}: no 'model' section (model.class_path and model.init_args)")
    target = model.get("class_path", model.get("target"))
    args = model.get("init_args", model.get("params"))
    if not isinstance(target, str) or not isinstance(args, dict):
        raise ConversionError(f"{yaml_path}: model needs class_path (a string) and init_args (a mapping)")
    return target, args


def class_path_or_none(yaml_path: Path) -> str:
    """The yaml's model class path, or "" when it has none (detection must not fail on another format's yaml)."""
    try:
        return model_section(yaml_path)[0]
    except ConversionError:
        return ""


def data_resolution(yaml_path: Path) -> int | None:
    """The image size the publisher evaluates at: data.init_args.validation.params.config.size (or train's)."""
    data = read_yaml(yaml_path).get("data")
    data = data.get("init_args", data.get("params")) if isinstance(data, dict) else None
    for split in ("validation", "test", "train"):
        try:
            size = data[split]["params"]["config"]["size"]
        except (KeyError, TypeError):
            continue
        if isinstance(size, int) and not isinstance(size, bool):
            return size
    return None


def lightning_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """`state_dict` of a Lightning checkpoint (read with weights_only=True, every tensor checked against its storage
    and the budgets of tensor_budget.py); anything else is refused."""
    return nested_state_dict(path, "a Lightning checkpoint")[0]


def inference_weights(state: dict[str, torch.Tensor], parts: tuple[str, ...], use_ema: bool | None,
                      where: Path) -> dict[str, torch.Tensor]:
    """The model's own entries (keys under `parts`), taken from LitEma's copies when use_ema (None: when there are
    copies), with every training-only entry named in one line on stderr; other keys are left for the format's rules."""
    ema = {k[len(EMA_PREFIX):]: v for k, v in state.items() if k.startswith(EMA_PREFIX)}
    if use_ema and not ema:
        notice(f"{where.name}: the yaml sets use_ema but the checkpoint holds no {EMA_PREFIX}* copies (a release "
               "may keep only the weights it evaluates): converting the weights it holds")
    use_ema = bool(ema) and use_ema is not False
    own = {k: v for k, v in state.items() if k.startswith(parts)}
    skipped = {f"{prefix}* ({what}, {n})": n for prefix, what in TRAINING_ONLY.items()
               if (n := sum(k.startswith(prefix) for k in state)) and not (use_ema and prefix == EMA_PREFIX)}
    if use_ema:
        missing = [k for k in own if k.replace(".", "") not in ema]
        if missing:
            raise ConversionError(f"{where}: use_ema is set but the EMA copy of {shorten(missing[0])} "
                                  f"({EMA_PREFIX}{missing[0].replace('.', '')}) is missing")
        skipped[f"the raw training weights ({len(own)})"] = len(own)
        own = {k: ema[k.replace(".", "")] for k in own}
    rest = {k: v for k, v in state.items() if not k.startswith((*TRAINING_ONLY, *parts))}
    chosen = "the EMA weights (model_ema.*), as the publisher's evaluation uses them" if use_ema else "the raw weights"
    notice(f"{where.name}: converting {chosen}; skipped training-only entries: {', '.join(skipped) or 'none'}")
    return {**own, **rest}


YAML_KEYS = {"ch": "ddconfig.ch", "ch_mult": "ddconfig.ch_mult", "num_res_blocks": "ddconfig.num_res_blocks",
             "z_channels": "ddconfig.z_channels", "attn_resolutions": "ddconfig.attn_resolutions",
             "n_embed": "n_embed", "embed_dim": "embed_dim"}


def check_against_weights(yaml_path: Path, given: dict[str, Any], inferred: dict[str, Any], weights_file: Path) -> None:
    """Each model field the yaml states must be what the weights' shapes say; the first that is not is named."""
    for field, key in YAML_KEYS.items():
        if field in given and field in inferred and given[field] != inferred[field]:
            raise ConversionError(f"{yaml_path}: model.init_args.{key} is {shorten(given[field])} but the weights in "
                                  f"{weights_file.name} have {shorten(inferred[field])}")


def encoder_shapes(state: dict[str, torch.Tensor], where: Path) -> dict[str, Any]:
    """ch, ch_mult, num_res_blocks and z_channels read off an encoder with taming's `down.{i}.block.{j}` layout
    (both Open-MAGVIT2's and IBQ's)."""
    def shape(key: str) -> torch.Size:
        if key not in state:
            raise ConversionError(f"{where}: key {key!r} is missing")
        return state[key].shape

    levels = len({int(m[1]) for k in state if (m := re.match(r"encoder\.down\.(\d{1,6})\.", k))})
    blocks = len({int(m[1]) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d{1,6})\.", k))})
    ch = shape("encoder.conv_in.weight")[0]
    widths = [shape(f"encoder.down.{i}.block.0.conv1.weight")[0] for i in range(levels)]
    if not levels or any(w % ch for w in widths):
        raise ConversionError(f"{where}: encoder widths {widths} are not whole multiples of conv_in's {ch}")
    return {"ch": ch, "ch_mult": [w // ch for w in widths], "num_res_blocks": blocks,
            "z_channels": shape("encoder.conv_out.weight")[0]}
