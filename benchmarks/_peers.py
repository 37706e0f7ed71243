"""The peers of benchmarks/peers.py, each built from its own package at the shared setup (256x256, ch 64, K 16,384)
with random weights and saved in its native format, with its own encode (pixels -> ids) and decode (ids -> pixels).

A peer that cannot be built here raises PeerUnavailable with the reason, which the results record.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from _setup import CODEBOOK_DIM, CODEBOOK_SIZE, RESOLUTION, randomize

GRID = RESOLUTION // 16  # every peer here downsamples by 16: 256x256 -> 16x16 ids
WIDTHS = (64, 64, 128, 128, 256)  # ch 64, ch_mult (1, 1, 2, 2, 4)


class PeerUnavailable(Exception):
    """This peer cannot be built on this machine; the message says why."""


@dataclass
class Peer:
    name: str  # the table's row: package and class
    source: Path  # the folder or file in its native format, which our CLI converts
    encode: Callable[[torch.Tensor], torch.Tensor]  # normalised pixels [B, 3, 256, 256] -> ids [B, 16, 16]
    decode: Callable[[torch.Tensor], torch.Tensor] | None  # ids [B, 16, 16] -> pixels; None: no decoder


def diffusers_peer(folder: Path) -> Peer:
    from diffusers import VQModel

    model = randomize(VQModel(
        block_out_channels=WIDTHS, layers_per_block=2, latent_channels=256, num_vq_embeddings=CODEBOOK_SIZE,
        vq_embed_dim=CODEBOOK_DIM, sample_size=RESOLUTION, down_block_types=("DownEncoderBlock2D",) * len(WIDTHS),
        up_block_types=("UpDecoderBlock2D",) * len(WIDTHS)))
    model.save_pretrained(folder)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        return model.quantize(model.encode(pixels).latents)[2][2].reshape(-1, GRID, GRID)

    def decode(ids: torch.Tensor) -> torch.Tensor:
        codes = model.quantize.get_codebook_entry(ids.flatten(), (ids.shape[0], GRID, GRID, CODEBOOK_DIM))
        return model.decode(codes, force_not_quantize=True).sample

    return Peer("diffusers `VQModel`", folder, encode, decode)


def janus_peer(folder: Path) -> Peer:
    """transformers' JanusVQVAE (LlamaGen's VQ-16). Its encode skips the l2 normalisation of Janus and LlamaGen, so
    the codes are made unit length: then both lookups pick the same code (tests/test_convert.py)."""
    from transformers import JanusVQVAE, JanusVQVAEConfig

    config = JanusVQVAEConfig(embed_dim=CODEBOOK_DIM, num_embeddings=CODEBOOK_SIZE, latent_channels=256, base_channels=64,
                              channel_multiplier=[1, 1, 2, 2, 4], num_res_blocks=2, num_patches=GRID)
    model = randomize(JanusVQVAE(config))
    with torch.no_grad():
        model.quantize.embedding.weight.copy_(F.normalize(model.quantize.embedding.weight, dim=-1))
    model.save_pretrained(folder)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        return model.encode(pixels).image_tokens.reshape(-1, GRID, GRID)

    def decode(ids: torch.Tensor) -> torch.Tensor:
        return model.decode(ids.reshape(ids.shape[0], -1))

    return Peer("transformers `JanusVQVAE`", folder, encode, decode)


def chameleon_peer(folder: Path) -> Peer:
    """transformers' ChameleonVQVAE: encoder only, as its published weights are (no decoder to time)."""
    from transformers import ChameleonVQVAE, ChameleonVQVAEConfig

    config = ChameleonVQVAEConfig(embed_dim=CODEBOOK_DIM, num_embeddings=CODEBOOK_SIZE, latent_channels=256,
                                  resolution=RESOLUTION, base_channels=64, channel_multiplier=[1, 1, 2, 2, 4],
                                  num_res_blocks=2, attn_resolutions=[])
    model = randomize(ChameleonVQVAE(config))
    model.save_pretrained(folder)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        return model.encode(pixels).image_tokens.reshape(-1, GRID, GRID)

    return Peer("transformers `ChameleonVQVAE`", folder, encode, None)


TAMING_YAML = """model:
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: {dim}
    n_embed: {codes}
    ddconfig: {ddconfig}
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {{disc_start: 10000}}
"""


def _import_taming():
    try:
        model = importlib.import_module("taming.modules.diffusionmodules.model")
        quantize = importlib.import_module("taming.modules.vqvae.quantize")
    except ImportError as error:
        raise PeerUnavailable(f"taming-transformers does not import ({error}); `pip install --no-deps taming-transformers`") from error
    return model, quantize


def taming_peer(folder: Path) -> Peer:
    """taming-transformers' own Encoder, Decoder and VectorQuantizer (its VQModel class needs Lightning), written as a
    taming log folder (configs/*-project.yaml, checkpoints/last.ckpt)."""
    model, quantize = _import_taming()
    ddconfig = {"double_z": False, "z_channels": 256, "resolution": RESOLUTION, "in_channels": 3, "out_ch": 3, "ch": 64,
                "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [GRID], "dropout": 0.0}
    parts = randomize(torch.nn.ModuleDict({
        "encoder": model.Encoder(**ddconfig), "decoder": model.Decoder(**ddconfig),
        "quantize": quantize.VectorQuantizer(CODEBOOK_SIZE, CODEBOOK_DIM, 0.25),
        "quant_conv": torch.nn.Conv2d(256, CODEBOOK_DIM, 1), "post_quant_conv": torch.nn.Conv2d(CODEBOOK_DIM, 256, 1),
    }))
    (folder / "configs").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    yaml = TAMING_YAML.format(dim=CODEBOOK_DIM, codes=CODEBOOK_SIZE, ddconfig=ddconfig)
    (folder / "configs" / "peers-project.yaml").write_text(yaml.replace("False", "false"))
    torch.save({"state_dict": parts.state_dict(), "hparams": argparse.Namespace()}, folder / "checkpoints" / "last.ckpt")

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        return parts["quantize"](parts["quant_conv"](parts["encoder"](pixels)))[2][2].reshape(-1, GRID, GRID)

    def decode(ids: torch.Tensor) -> torch.Tensor:
        codes = parts["quantize"].get_codebook_entry(ids.flatten(), (ids.shape[0], GRID, GRID, CODEBOOK_DIM))
        return parts["decoder"](parts["post_quant_conv"](codes))

    return Peer("taming-transformers `VQModel` (its modules)", folder, encode, decode)


BUILDERS: dict[str, Callable[[Path], Peer]] = {
    "diffusers": diffusers_peer, "janus": janus_peer, "chameleon": chameleon_peer, "taming": taming_peer,
}

NOT_MEASURED = {
    "transformers `Emu3VQVAE`": "image_tokenizer has no Emu3 converter yet (its VQ is a MoVQ with spatial norms and a "
                                "temporal axis), so there are no converted weights to compare against",
    "open-magvit2": "lookup-free quantization (ids are sign bits, no codebook to search), which image_tokenizer does "
                    "not convert; its model module also imports Lightning",
    "LlamaGen `VQModel`": "not on PyPI; its VQ-16 is the architecture of transformers' JanusVQVAE, measured above",
}
