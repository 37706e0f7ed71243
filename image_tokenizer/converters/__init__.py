"""Published VQ tokenizers -> ordinary ImageTokenizers with identical ids: taming, LlamaGen, diffusers, Chameleon, Janus.

    tok = image_tokenizer.convert("path/or/hub-id", format="auto")   # this package is image_tokenizer.converters
    tok.save_pretrained("my-tokenizer")

Each format is one module that maps config and keys (detect.py picks one for format="auto"). The weights are
then loaded strictly into our VQModel: a missing, unexpected, mis-shaped, non-float or non-finite tensor is an
error naming the file and the key.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import check_model_size, check_weight_values
from ..errors import ConfigError, ConversionError, shorten
from ..fileio import check_state_dict
from ..hub import download_snapshot
from ..model_card import CARD_NAME, read_front_matter
from ..modeling import VQModel
from ..tokenizer import ImageTokenizer
from .common import Converted, source_file
from .detect import FORMATS, detect_format

SCALED_FORMATS = ("var",)  # formats whose load() takes scales=
HUB_FILES = ["*.json", "*.yaml", "*.safetensors", "*.ckpt", "*.pt", "*.pth", "*.bin", "encoder.jit", "decoder.jit",
             "README.md", "LICENSE*"]


def convert(
    src: str | os.PathLike,
    format: str = "auto",
    *,
    resolution: int | None = None,
    scales: Sequence[int] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> ImageTokenizer:
    """A published checkpoint (local folder, checkpoint file, or Hub repo id) as an ImageTokenizer.

    resolution overrides the preprocessing resolution where the source does not fix one (LlamaGen: 256 by
    default; its text-to-image tokenizers were used at 384 or 512). scales is a multi-scale (VAR) schedule, coarse
    to fine, where the file does not fix it (VAR: the released 10 scales unless given)."""
    path = resolve_source(src, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    return convert_resolved(path, str(src), format, resolution, scales)


def convert_resolved(path: Path, src: str, format: str = "auto", resolution: int | None = None,
                     scales: Sequence[int] | None = None) -> ImageTokenizer:
    """convert() of a source already found on disk by resolve_source; `src` is how the user named it (the card's)."""
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise ConversionError(f"unknown format {format!r}; known: auto, {', '.join(FORMATS)}")
    if scales is not None and format not in SCALED_FORMATS:
        raise ConversionError(f"{path}: scales apply to multi-scale formats ({', '.join(SCALED_FORMATS)}), not {format!r}")
    try:
        extra = {} if scales is None else {"scales": scales}
        converted = FORMATS[format].load(path, resolution=resolution, **extra)
    except ConfigError as error:  # the source's settings make an impossible config: name the source
        raise ConversionError(f"{path}: {error}") from None
    command = ["image-tokenizer", "convert", str(src), "--format", format]
    if resolution:
        command += ["--resolution", str(resolution)]
    if scales is not None:
        command += ["--scales", ",".join(map(str, scales))]
    return build_tokenizer(converted, str(src), format, path, shlex.join(command))


def resolve_source(src: str | os.PathLike, **hub_kwargs) -> Path:
    """A local file or folder as it is, anything else as a Hub repo id fetched through the cache (offline-safe)."""
    path = Path(src).expanduser()
    if path.exists():
        return path
    return download_snapshot(str(src), allow_patterns=HUB_FILES, not_found_hint="is not an existing file or folder,",
                             **hub_kwargs)


def build_tokenizer(converted: Converted, source: str, format: str, path: Path, command: str) -> ImageTokenizer:
    """Load converted weights strictly into our model and record where they came from in the model card. Every
    size and shape is checked against the model on the meta device before anything is allocated or read."""
    meta_model = check_model_size(converted.config, converted.weights_file)
    codebook = converted.codebook  # None for kinds that imply their codes (lfq, fsq)
    expected_codebook = (converted.config.quantizer.codebook_size, converted.config.quantizer.codebook_dim)
    if (codebook is None) != (not converted.config.quantizer.learned_codebook) or (
        codebook is not None and tuple(codebook.shape) != expected_codebook
    ):
        found = "no codebook" if codebook is None else f"a codebook of shape {tuple(codebook.shape)}"
        raise ConversionError(
            f"{converted.weights_file}: {found}, but the config describes {converted.config.quantizer.kind} with "
            f"{expected_codebook[0]} codes of dimension {expected_codebook[1]}"
        )
    check_state_dict(converted.weights_file, converted.weights, meta_model.weights_state_dict())
    # values last: every shape is the model's by now, so reading them costs no more than the model itself
    check_weight_values(converted.weights_file, {**converted.weights, **({"codebook": codebook} if codebook is not None else {})})
    weights = {k: v.float() for k, v in converted.weights.items()}
    model = VQModel(converted.config)
    model.load_weights(weights, None if codebook is None else codebook.float())
    card_info = {"conversion": {
        "source": source,
        "format": format,
        "weights file": converted.weights_file.name,
        "license": f"{_source_license(path) or converted.info['license']}. Respect the original license: the "
        "conversion changes the file format, not the terms under which the weights were released",
        "ids": converted.info["ids"],
        "pairs with": converted.info["pairs_with"],
        "command": command,
    }}
    return ImageTokenizer(converted.config, model, card_info=card_info)


def _source_license(path: Path) -> str | None:
    """The `license` in the source folder's model card front matter, when it has one (shortened: it is a value
    from someone else's file, and it goes into our card)."""
    card = (path if path.is_dir() else path.parent) / CARD_NAME
    if not card.is_file():
        return None
    license_name = read_front_matter(source_file(path, card)).get("license")
    if not isinstance(license_name, str) or not license_name:
        return None
    return f"{shorten(license_name)} (from the source's model card)"


__all__ = ["FORMATS", "build_tokenizer", "convert", "convert_resolved", "detect_format", "resolve_source"]
