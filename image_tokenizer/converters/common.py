"""What every format converter shares: safe checkpoint reading, key renaming, and the converted result.

Pickled checkpoints (.ckpt, .pt, .bin) are read only with `torch.load(weights_only=True)`, allowlisting a few
harmless globals; anything else is refused, naming the file and the global. Keys are renamed by explicit rules;
a key no rule knows is an error naming the file and the key, never silently dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import textfiles
from ..config import ImageTokenizerConfig
from ..errors import ConversionError, shorten
from ..safe_paths import inside
from ..textfiles import read_json_object
from .tensor_budget import check_checkpoint_zip, check_loaded_tensors

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# What most publishers' own loaders do with transparency: PIL's .convert("RGB") (taming's ImagePaths, LlamaGen's and
# SEED-Voken's datasets, Janus's load_pil_images, diffusers' load_image, Emu3's processor with the transformers of
# its release; transformers 5 composites onto white) or slicing off the alpha channel (Cosmos's read_image) drops
# alpha, which leaves a transparent (0, 0, 0, 0) pixel black. Converters pin it, so converted ids never follow our
# default for new tokenizers (white). Chameleon's processor composites onto white, and its converter pins that.
ALPHA_DROPPED = (0, 0, 0)


class LightningCallbackStandIn:
    """Stands in for PyTorch Lightning callback classes, which a Lightning .ckpt uses as dictionary keys only.

    Allowlisted under those names so that taming's checkpoints load with weights_only=True without Lightning;
    nothing of it is ever called, and its state is discarded with the rest of the non-weight entries."""


# Globals a published checkpoint may hold besides tensors; each is data, never code that runs on load.
SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,  # LlamaGen stores its training arguments
    (LightningCallbackStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    (LightningCallbackStandIn, "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint"),
]


@dataclass
class Converted:
    """A published model in our terms: config, weights under our key names, the codebook, and its provenance."""

    config: ImageTokenizerConfig
    weights: dict[str, torch.Tensor]
    codebook: torch.Tensor | None  # None for quantizer kinds that imply their codes (lfq, fsq)
    weights_file: Path
    info: dict[str, Any] = field(default_factory=dict)  # license, what ids mean, which LM pairs with it


def load_pickled_checkpoint(path: Path) -> Any:
    """torch.load(weights_only=True) with our allowlist; an unsafe, unreadable or over-budget file is a
    ConversionError. A zip checkpoint's entries are checked before torch.load reads them, and every tensor it
    returns after (tensor_budget.py): both before anything is inflated or materialised."""
    path = Path(path)
    check_checkpoint_zip(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        offending = _unsafe_globals(path) or re.findall(r"GLOBAL ([\w.]+)", str(error))
        if not offending:
            reason = _one_line(error, last=True)
            raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
        raise ConversionError(
            f"{path}: refusing to unpickle {', '.join(name[:100] for name in offending[:5])}: "
            "image-tokenizer reads pickled checkpoints only with torch.load(weights_only=True), which never runs "
            "code from the file; re-save the weights as safetensors if you trust its source"
        ) from None
    # TypeError: the weights-only unpickler applying malformed state to an allowlisted object (a __setstate__
    # that is not callable, attribute names that are not strings)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
                              f"{_one_line(error)})") from None
    check_loaded_tensors(path, loaded)
    return loaded


def _one_line(error: BaseException, last: bool = False) -> str:
    """One line of an error's message, cut short (torch's weights-only refusals give the reason on their last)."""
    lines = str(error).strip().splitlines() or [""]
    return (lines[-1] if last else lines[0])[:300]


def _unsafe_globals(path: Path) -> list[str]:
    allowed = {name for entry in SAFE_GLOBALS if isinstance(entry, tuple) for name in [entry[1]]}
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError):  # not a zip checkpoint: use the message
        return []
    return [n for n in names if n not in allowed and n != "argparse.Namespace"]


def load_weights_file(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (only those under `prefix`, with it removed), or of a pickled state dict."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                names = [k for k in handle.keys() if k.startswith(prefix)]  # noqa: SIM118 (safe_open is no dict)
                return {k[len(prefix):]: handle.get_tensor(k) for k in names}
        except (SafetensorError, OSError, ValueError) as error:
            raise ConversionError(f"{path} is not a readable safetensors file: {error}") from None
    state = load_pickled_checkpoint(path)
    if not is_state_dict(state):
        raise ConversionError(f"{path}: expected a state dict (tensors by name)")
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def nested_state_dict(path: Path, what: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the `state_dict` entry of a pickled training checkpoint, the names of its other entries), as Lightning and
    RQ-VAE save them; anything else is refused, naming `what` the file should have been."""
    checkpoint = load_pickled_checkpoint(path)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not is_state_dict(state):
        found = sorted(str(k)[:60] for k in checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ConversionError(f"{path}: not {what}: expected a dict whose 'state_dict' holds the weights (tensors by "
                              f"name), found {found}")
    return state, sorted(str(k)[:60] for k in checkpoint if k != "state_dict")


def is_state_dict(value: Any) -> bool:
    """True for a dict of tensors keyed by strings, what every format's weights must be before keys are renamed."""
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a source's file, without aliases (textfiles.BoundedLoader: no "billion laughs")."""
    data = textfiles.read_yaml(path, ConversionError)
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a YAML mapping")
    return data


Rule = tuple[str, "str | Callable[[re.Match], str] | None"]


def rename_keys(weights: dict[str, torch.Tensor], rules: Iterable[Rule], where: Path) -> dict[str, torch.Tensor]:
    """Rename every key by the first rule whose regex matches it in full (None drops it on purpose).

    A key that no rule matches is an error naming the file and the key: weights are never lost silently."""
    compiled = [(re.compile(pattern), target) for pattern, target in rules]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        if not isinstance(key, str):
            raise ConversionError(f"{where}: a weight is keyed by {type(key).__name__} {str(key)[:100]!r}, not by a name")
        for pattern, target in compiled:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            if target is not None:
                renamed[match.expand(target) if isinstance(target, str) else target(match)] = tensor
            break
        else:
            raise ConversionError(f"{where}: unexpected key {shorten(key)}, which no part of this format's layout explains")
    return renamed


def take_codebook(weights: dict[str, torch.Tensor], where: Path) -> torch.Tensor:
    """Remove and return the codebook (renamed to quantizer.codebook by the format's rules); missing is an error."""
    codebook = weights.pop("quantizer.codebook", None)
    if codebook is None:
        raise ConversionError(f"{where}: the codebook 'quantize.embedding.weight' is missing")
    return codebook


def require(data: dict[str, Any], key: str, where: Path, kind: type | tuple[type, ...]) -> Any:
    """data[key], checked for presence and type, with an error naming the file and the field."""
    if key not in data:
        raise ConversionError(f"{where}: field {key!r} is missing")
    value = data[key]
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConversionError(f"{where}: field {key!r} must be {_kind_name(kind)}, got {shorten(value)}")
    if not isinstance(value, kind):
        raise ConversionError(f"{where}: field {key!r} must be {_kind_name(kind)}, got {shorten(value)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def reversed_level(total_levels: int) -> Callable[[re.Match], str]:
    """A rename target for decoder levels stored lowest resolution first: level i becomes up.{L-1-i}."""

    def target(match: re.Match) -> str:
        return f"decoder.up.{total_levels - 1 - int(match.group(1))}.{match.group(2)}"

    return target


def ch_and_mult(widths: list[int], where: Path, field_name: str) -> tuple[int, tuple[int, ...]]:
    """Absolute channel widths per level -> (ch, ch_mult); widths must be whole multiples of the first."""
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) for w in widths):
        raise ConversionError(f"{where}: {field_name} must be a non-empty list of integers, got {shorten(widths)}")
    ch = widths[0]
    if ch < 1 or any(w % ch for w in widths):
        raise ConversionError(f"{where}: {field_name} {shorten(widths)} are not whole multiples of the first width {ch}")
    return ch, tuple(w // ch for w in widths)


def at_resolution(config: ImageTokenizerConfig, resolution: int | None) -> ImageTokenizerConfig:
    """The same model preprocessing to another resolution; attention stays at the same levels."""
    if not resolution or resolution == config.resolution:
        return config
    levels = [config.resolution // 2**i for i in range(len(config.ch_mult))]
    attention = tuple(resolution // 2**i for i, r in enumerate(levels) if r in config.attn_resolutions)
    return dataclasses.replace(config, resolution=resolution, attn_resolutions=attention)


def attention_at_lowest_level(resolution: int, levels: int) -> tuple[int, ...]:
    """attn_resolutions for models that attend only at the lowest resolution level (LlamaGen, Janus)."""
    return (resolution // 2 ** (levels - 1),)


def source_file(source: Path, file: Path, what: str | None = None) -> Path:
    """`file`, refused unless it lies inside the source's folder (the source itself, or a checkpoint file's own
    folder) with symlinks resolved (safe_paths.inside); the file the user named is theirs to name."""
    if file == source:
        return file
    return inside(source if source.is_dir() else source.parent, file, what)


def folder_config(path: Path) -> dict[str, Any]:
    """A folder source's config.json (checked to lie inside it), or {} for a file or a folder without one."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file()):
        return {}
    return read_json_object(source_file(path, config), ConversionError)


def read_transformers_vq(path: Path, model_types: tuple[str, str]) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """The VQ part of a transformers save_pretrained folder: its config and weights, without a 'model.vqmodel.' prefix.

    model_types = (the VQ model's own model_type, the full multimodal model's), e.g. ("janus_vqgan", "janus")."""
    config_path = source_file(path, path / "config.json")
    config = read_json_object(config_path, ConversionError)
    vq_type, full_type = model_types
    if config.get("model_type") == vq_type:
        vq_config, prefix = config, ""
    elif config.get("model_type") == full_type:
        vq_config = require(config, "vq_config", config_path, dict)
        prefix = "model.vqmodel."
    else:
        raise ConversionError(f"{config_path}: model_type {shorten(config.get('model_type'))} is neither {vq_type!r} nor {full_type!r}")
    if vq_config.get("double_latent", False):
        raise ConversionError(f"{config_path}: double_latent is true, which a VQ model never uses")
    weights, weights_file = {}, config_path
    for weights_file in _weight_files(path, prefix):
        weights.update(load_weights_file(weights_file, prefix))
    if not weights:
        raise ConversionError(f"{path}: no weights{f' under {prefix!r}' if prefix else ''} in its weight files")
    return vq_config, weights, weights_file


def _weight_files(path: Path, prefix: str) -> list[Path]:
    """The files that hold a transformers folder's weights (only the shards with `prefix` keys when sharded); an
    index entry that names a file outside the folder (absolute, `../`, or a symlink out) is refused."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        index = source_file(path, index)
        weight_map = require(read_json_object(index, ConversionError), "weight_map", index, dict)
        files: dict[str, Path] = {}
        for key, name in sorted(weight_map.items()):
            if not key.startswith(prefix):
                continue
            if not isinstance(name, str) or not name:
                raise ConversionError(f"{index}: weight_map entry {key!r} must name a file, got {name!r}")
            if name not in files:
                files[name] = source_file(path, path / name, f"{index}: weight_map entry {key!r} -> {name!r}")
        return [files[name] for name in sorted(files)]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return [source_file(path, path / name)]
    raise ConversionError(f"{path}: no model.safetensors (or pytorch_model.bin) beside config.json")
