"""The files of a saved tokenizer, and the strict checks that stand between them and a model.

Names and hashes of the saved files; reading a folder (config, vocabulary, codebook, weights), each file
checked against the others and against the sha256 recorded at save time; the model-size and weight-value
checks that converters/ applies too; and the fingerprints that tie token ids to the exact tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .config import CONFIG_NAME, FILES_SHA256, ImageTokenizerConfig
from .errors import CheckpointError, shorten
from .fileio import check_state_dict, load_tensors, read_json_object, save_tensors, tensor_shapes
from .model_card import CARD_NAME
from .modeling import VQModel
from .vocab import MAX_LISTED_TOKENS, VOCAB_NAME, ImageVocab

if TYPE_CHECKING:
    from .tokenizer import ImageTokenizer

WEIGHTS_NAME = "model.safetensors"
CODEBOOK_NAME = "codebook.safetensors"
CODEBOOK_TENSOR = "codebook"
LEVELS_TENSOR = "levels"  # what codebook.safetensors holds for kinds that imply their codebook (fsq, lfq)
SAVED_FILES = [CONFIG_NAME, WEIGHTS_NAME, CODEBOOK_NAME, VOCAB_NAME, CARD_NAME]
PRIOR_LAYOUT_NAME = "prior_layout.json"  # the file that marks a prior's folder (prior/layout.py)


def read_checkpoint(directory: Path) -> tuple[ImageTokenizerConfig, ImageVocab, VQModel]:
    """A saved tokenizer folder -> its config, vocabulary and model with the weights loaded, every file checked
    strictly (missing, unexpected or mis-shaped tensors, non-finite values, changed bytes are errors)."""
    if (directory / PRIOR_LAYOUT_NAME).is_file():
        raise CheckpointError(f"{directory} holds an image prior, not a tokenizer; load it with ImagePrior.from_pretrained")
    config = ImageTokenizerConfig.load(directory)
    for name in (WEIGHTS_NAME, CODEBOOK_NAME):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: {name} not found; a saved tokenizer needs {', '.join(SAVED_FILES[:4])}")
    expected = check_model_size(config, directory / CONFIG_NAME).weights_state_dict()
    vocab, vocab_data = ImageVocab.load(directory)
    # Shapes from the safetensors header first: a config that declares a large model beside small weights is
    # refused before the model is allocated (the header's shapes are what the file really holds).
    check_state_dict(directory / WEIGHTS_NAME, tensor_shapes(directory / WEIGHTS_NAME), expected)
    codebook = load_codebook(directory, config, vocab, vocab_data)
    weights = load_tensors(directory / WEIGHTS_NAME)
    check_weight_values(directory / WEIGHTS_NAME, weights)
    verify_files(directory)  # last: what passed every check above may still have been changed since saving
    model = VQModel(config)
    model.load_weights(weights, codebook)
    return config, vocab, model


def write_checkpoint(directory: Path, config: ImageTokenizerConfig, model: VQModel, vocab: ImageVocab) -> None:
    """Write model.safetensors, codebook.safetensors, vocab.json, then config.json with their sha256 (last:
    a directory with config.json is a complete save). The card is the caller's, written before this.
    For fsq and lfq, codebook.safetensors holds only the levels per channel: the codes follow from them."""
    quantizer, q = model.quantizer, config.quantizer
    save_tensors(directory / WEIGHTS_NAME, model.weights_state_dict(), metadata={"format": "pt"})
    if q.learned_codebook:
        tensors = {CODEBOOK_TENSOR: quantizer.codebook.float()}
    else:
        tensors = {LEVELS_TENSOR: quantizer.levels.detach().cpu()}
    metadata = {"normalization": q.normalization, "codebook_size": str(vocab.codebook_size), "kind": q.kind}
    save_tensors(directory / CODEBOOK_NAME, tensors, metadata=metadata)
    vocab.save(directory, codebook_dim=q.codebook_dim, normalization=q.normalization,
               list_tokens=q.learned_codebook and vocab.codebook_size <= MAX_LISTED_TOKENS)
    hashes = {name: file_sha256(directory / name) for name in (WEIGHTS_NAME, CODEBOOK_NAME, VOCAB_NAME)}
    config.save(directory, files_sha256=hashes)


# Config keys added after fingerprints were first recorded, left out while unset (and `layout`, derived from the
# quantizer), so a tokenizer that does not use them keeps the fingerprint its pre-tokenized outputs recorded.
UNFINGERPRINTED_WHEN_UNSET = ("scales", "depth", "phi_ratio", "phi_convs", "coarse_restart_steps", "coarse_restart_share")


def tokenizer_fingerprint(tokenizer: ImageTokenizer) -> str:
    """sha256 over the config and every weight tensor: equal only for identical tokenizers."""
    config = tokenizer.config.to_dict()
    config.pop("layout", None)
    quantizer = config["quantizer"]
    config["quantizer"] = {k: v for k, v in quantizer.items() if not (k in UNFINGERPRINTED_WHEN_UNSET and v is None)}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(tokenizer.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def codebook_sha256(tokenizer: ImageTokenizer) -> str:
    """Fingerprint of a tokenizer's vocabulary: a prior is only meaningful with the codebook it was trained on.
    Computed on the CPU wherever the tokenizer runs, so a prior trained beside a GPU tokenizer loads on a CPU."""
    codes = tokenizer.model.quantizer.effective_codebook(device="cpu")
    return hashlib.sha256(codes.detach().contiguous().numpy().tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(directory: Path) -> None:
    """Check the files against the sha256 that config.json recorded when they were saved (folders saved before
    this record existed have none). A flipped byte in the weights would otherwise load as a silently different
    model; hashing costs about 40 ms for the 21 MB shapes-64, small next to reading the file."""
    recorded = read_json_object(directory / CONFIG_NAME, "tokenizer").get(FILES_SHA256)
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{directory / CONFIG_NAME}: field {FILES_SHA256!r} must be an object")
    for name, expected in recorded.items():
        if name not in (WEIGHTS_NAME, CODEBOOK_NAME, VOCAB_NAME):
            raise CheckpointError(f"{directory / CONFIG_NAME}: {FILES_SHA256} names an unknown file {shorten(name)}")
        if (directory / name).is_file() and file_sha256(directory / name) != expected:
            raise CheckpointError(
                f"{directory / name}: its sha256 differs from the one {CONFIG_NAME} recorded when it was saved; "
                "the file was changed or corrupted since (re-download or re-save it)"
            )


MAX_PARAMETERS = 1_000_000_000  # 4 GB of fp32 weights: far above any published VQ tokenizer (LlamaGen VQ-16: 72 M)


def check_model_size(config: ImageTokenizerConfig, where: Path) -> VQModel:
    """Build the model a config implies on the meta device (no memory) and refuse absurd sizes, counting buffers
    too (with use_ema the codebook and its EMA sums are buffers, not parameters). Returns that meta model, whose
    state dict gives the shapes to check a weights file against before the real model is allocated."""
    with torch.device("meta"):
        model = VQModel(config)
    count = sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers())
    if count > MAX_PARAMETERS:
        vit = config.vit
        sizes = (f"resolution={config.resolution}, vit patch sizes {vit.encoder_patch_size}/{vit.decoder_patch_size}, "
                 f"widths {vit.encoder_width}/{vit.decoder_width}, num_latent_tokens={vit.num_latent_tokens}"
                 if vit else f"ch={config.ch}, ch_mult={list(config.ch_mult)}, z_channels={config.z_channels}")
        raise CheckpointError(
            f"{where}: this config implies {count:,} parameters and buffers ({count * 4 / 2**30:.1f} GiB in fp32), over "
            f"the limit of {MAX_PARAMETERS:,}; check {sizes}, codebook_size={config.quantizer.codebook_size}, "
            f"codebook_dim={config.quantizer.codebook_dim}, use_ema={config.quantizer.use_ema}"
        )
    return model


WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_weight_values(where: Path, weights: dict[str, torch.Tensor]) -> None:
    """Saved weights are float16, bfloat16, float32 or float64, and finite (a tampered or broken file must not load
    silently). Callers compare shapes first: this reads every value."""
    for key, tensor in weights.items():
        if tensor.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"{where}: tensor {key!r} has dtype {tensor.dtype}; weights must be floating point "
                                  "(float16, bfloat16, float32 or float64)")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{where}: tensor {key!r} holds NaN or infinite values")
    if weights and not any(bool(tensor.any()) for tensor in weights.values()):
        raise CheckpointError(f"{where}: every weight is zero, so every image would get the same ids")


def load_codebook(directory: Path, config: ImageTokenizerConfig, vocab: ImageVocab, vocab_data: dict) -> torch.Tensor | None:
    """Read codebook.safetensors and cross-check it against vocab.json and config.json; None for kinds that imply
    their codebook (fsq, lfq), whose file holds the levels per channel. vocab.json's layout must be config.json's."""
    k, d = config.quantizer.codebook_size, config.quantizer.codebook_dim
    if vocab.codebook_size != k:
        raise CheckpointError(
            f"{directory / VOCAB_NAME} says codebook_size {vocab.codebook_size} but {CONFIG_NAME} says {k}"
        )
    if tuple(vocab.grid_size) != config.grid_size:
        raise CheckpointError(f"{directory / VOCAB_NAME} grid_size {shorten(list(vocab.grid_size))} disagrees with {CONFIG_NAME}")
    if vocab.layout != config.layout:
        raise CheckpointError(f"{directory / VOCAB_NAME} layout {shorten(vocab.layout.to_dict())} disagrees with the "
                              f"{config.layout.kind} layout that {CONFIG_NAME}'s quantizer implies")
    if vocab_data.get("codebook_dim", d) != d:
        raise CheckpointError(
            f"{directory / VOCAB_NAME} says codebook_dim {shorten(vocab_data.get('codebook_dim'))} but {CONFIG_NAME} says {d}"
        )
    expected_norm = config.quantizer.normalization
    if vocab_data.get("codebook_normalization", expected_norm) != expected_norm:
        raise CheckpointError(
            f"{directory / VOCAB_NAME} says codebook_normalization {shorten(vocab_data.get('codebook_normalization'))} "
            f"but {CONFIG_NAME} implies {expected_norm!r}"
        )
    tensors = load_tensors(directory / CODEBOOK_NAME)
    if not config.quantizer.learned_codebook:
        check_levels(directory / CODEBOOK_NAME, tensors, config)
        return None
    if set(tensors) != {CODEBOOK_TENSOR}:
        raise CheckpointError(
            f"{directory / CODEBOOK_NAME} must hold exactly one tensor named {CODEBOOK_TENSOR!r}, found {shorten(sorted(tensors))}"
        )
    codebook = tensors[CODEBOOK_TENSOR]
    if tuple(codebook.shape) != (k, d):
        raise CheckpointError(
            f"{directory / CODEBOOK_NAME} holds a {tuple(codebook.shape)} codebook but {VOCAB_NAME} and "
            f"{CONFIG_NAME} describe {k} codes of dimension {d}"
        )
    if not codebook.is_floating_point():
        raise CheckpointError(f"{directory / CODEBOOK_NAME}: the codebook has dtype {codebook.dtype}; it must be floating point")
    if not torch.isfinite(codebook).all():
        raise CheckpointError(f"{directory / CODEBOOK_NAME} contains NaN or infinite code vectors")
    if k > 1 and bool((codebook == codebook[0]).all()):
        raise CheckpointError(f"{directory / CODEBOOK_NAME}: all {k} code vectors are identical, so every id would be the same")
    return codebook.float()


def check_levels(where: Path, tensors: dict[str, torch.Tensor], config: ImageTokenizerConfig) -> None:
    """An fsq/lfq codebook file holds one tensor, the levels per channel, equal to what config.json implies."""
    q = config.quantizer
    expected = list(q.levels) if q.kind == "fsq" else [2] * q.bits
    found = tensors.get(LEVELS_TENSOR)
    if set(tensors) != {LEVELS_TENSOR} or found is None or found.dtype != torch.long or found.tolist() != expected:
        described = {name: tuple(t.shape) for name, t in tensors.items()}
        raise CheckpointError(
            f"{where} must hold one int64 tensor {LEVELS_TENSOR!r} equal to {expected} (the {q.kind} levels that "
            f"{CONFIG_NAME} implies), found {described}"
        )
