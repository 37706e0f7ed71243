"""format="auto": which published format a file or folder is in, from its files and config, never by guessing."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConversionError
from . import chameleon, cosmos, diffusers, emu3, ibq, janus, llamagen, open_magvit2, rqvae, taming, titok, var

# Most specific first: transformers and diffusers folders are told apart by their config.json, Lightning
# checkpoints by their yaml's model class (taming, which takes any .ckpt beside a yaml, last). VAR's .pth (its key
# names) and RQ-VAE's config.yaml (arch.type) and TiTok's config.json come before LlamaGen, which takes any .pt or .pth.
FORMATS = {m.NAME: m for m in (janus, chameleon, emu3, diffusers, cosmos, titok, var, rqvae, llamagen, open_magvit2, ibq, taming)}


def detect_format(path: Path) -> str:
    """The name of the first format whose detector recognises `path`; a clear error when none does."""
    for name, module in FORMATS.items():
        if module.detect(path):
            return name
    what = "folder" if path.is_dir() else "file"
    raise ConversionError(
        f"{path}: unknown format. This {what} is none of: a transformers JanusVQVAE/ChameleonVQVAE folder "
        "(config.json model_type janus_vqgan/janus/chameleon_vqgan/chameleon), a transformers Emu3VQVAE folder "
        "(model_type emu3_vqgan/emu3), a diffusers VQModel folder (config.json _class_name VQModel), a Cosmos folder "
        "(encoder.jit and decoder.jit), a TiTok folder (config.json model.vq_model.num_latent_tokens), a LlamaGen .pt (or its folder), an Open-MAGVIT2 or IBQ Lightning .ckpt "
        "(with its yaml; Open-MAGVIT2 also without), an RQ-VAE folder (model.pt and config.yaml, arch.type rq-vae), "
        "or a taming .ckpt with its config.yaml. "
        f"Pass --format to say which ({', '.join(FORMATS)})"
    )
