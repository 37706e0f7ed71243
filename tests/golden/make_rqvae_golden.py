"""Writes tests/golden/rqvae_tiny.{safetensors,yaml}: a tiny random-weight RQ-VAE built and run with the publisher's code.

Publisher's code: https://github.com/kakaobrain/rq-vae-transformer at commit 341395e562ac347f5eb62db9f5f08b9f2cc42a60
(2024-01-03): rqvae/models/rqvae/ (RQVAE, RQBottleneck, VQEmbedding, the taming-like Encoder and Decoder) built by
get_rqvae from the arch section of a config.yaml that rqvae/utils/config.py writes and reads (load_config,
augment_defaults, augment_arch_defaults), as main_stage1.py saves it beside model.pt. The config is the released
configs/imagenet256/stage1/in256-rqvae-8x8x4.yaml with tiny shapes. Their code is not part of this repository; to
re-create the files (needs torch, numpy, pyyaml, omegaconf, easydict):

    git clone https://github.com/kakaobrain/rq-vae-transformer /tmp/rq-vae-transformer
    git -C /tmp/rq-vae-transformer checkout 341395e562ac347f5eb62db9f5f08b9f2cc42a60
    python tests/golden/make_rqvae_golden.py --repo /tmp/rq-vae-transformer

rqvae/models/__init__.py also imports the RQ-Transformer, whose config dataclasses (mutable defaults) no longer
import on Python >= 3.11; the RQ-VAE needs none of it, so this script enters `rqvae.models` without running that
__init__ and gives `rqvae.utils.config` an empty stand-in for the transformer's config class (only the rq-vae
branch of augment_arch_defaults runs). The weights are rounded to float16 before the reference runs, so the stored
float16 values are exactly the weights that produced the stored ids and reconstructions. The codebook's padding
row (index n_embed, which their lookup never considers) stays zero as nn.Embedding's padding_idx leaves it: it is
nearer than every code to 92 of the 3,072 residuals, so a converter that kept the row would give other ids.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

OUT = Path(__file__).parent
COMMIT = "341395e562ac347f5eb62db9f5f08b9f2cc42a60"
DDCONFIG = {"double_z": False, "z_channels": 16, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [16], "dropout": 0.0}
GRID, EMBED_DIM, N_EMBED, DEPTH, IMAGES = 16, 8, 64, 4, 3
HPARAMS = {"embed_dim": EMBED_DIM, "n_embed": N_EMBED, "latent_shape": [GRID, GRID, EMBED_DIM],
           "code_shape": [GRID, GRID, DEPTH], "shared_codebook": True}


def import_publisher(repo: Path) -> types.SimpleNamespace:
    """Their config functions and get_rqvae, without the RQ-Transformer (see the module docstring)."""
    sys.path.insert(0, str(repo))
    models = types.ModuleType("rqvae.models")
    models.__path__ = [str(repo / "rqvae" / "models")]
    transformer = types.ModuleType("rqvae.models.rqtransformer")
    transformer.__path__ = []
    transformer_configs = types.ModuleType("rqvae.models.rqtransformer.configs")
    transformer_configs.RQTransformerConfig = None
    sys.modules.update({"rqvae.models": models, "rqvae.models.rqtransformer": transformer,
                        "rqvae.models.rqtransformer.configs": transformer_configs})
    from omegaconf import OmegaConf
    from rqvae.models.rqvae import get_rqvae
    from rqvae.utils.config import augment_arch_defaults, augment_defaults, load_config
    from rqvae.utils.dist import DistEnv

    return types.SimpleNamespace(OmegaConf=OmegaConf, get_rqvae=get_rqvae, load_config=load_config,
                                 augment_defaults=augment_defaults, augment_arch_defaults=augment_arch_defaults,
                                 DistEnv=DistEnv)


def write_config(pub: types.SimpleNamespace, repo: Path, path: Path) -> None:
    """The released ImageNet stage-1 config with tiny shapes, completed and saved as their training setup does
    (rqvae/utils/setup.py: config_setup, then OmegaConf.save beside the checkpoints)."""
    config = pub.load_config(repo / "configs/imagenet256/stage1/in256-rqvae-8x8x4.yaml")
    config.arch.hparams.update(HPARAMS)
    config.arch.ddconfig.update(DDCONFIG)
    config = pub.augment_defaults(config)
    config.seed = 0
    config.result_path = "/results/in256-rqvae-tiny/01012022_000000"
    args = {"model_config": "/rq-vae-transformer/configs/imagenet256/stage1/in256-rqvae-8x8x4.yaml",
            "result_path": "/results", "load_path": "", "test_batch_size": 200, "test_epoch": -1, "postfix": "",
            "seed": 0, "world_size": 1, "local_rank": 0, "node_rank": 0, "dist_backend": "nccl", "timeout": 86400,
            "eval": False, "resume": False, "rank": 0}
    config.runtime = {"args": args, "extra_config": {}, "distenv": pub.DistEnv(1, 0, 0, 1, True, "tiny")}
    pub.OmegaConf.save(config, path)


def reference_model(pub: types.SimpleNamespace, config_path: Path) -> torch.nn.Module:
    """The model as their load_model builds it from config.yaml, random everywhere (norm affines, EMA buffers too),
    rounded to float16; the codebook's rows at scales from 0.3 to 1.5, so that each depth picks smaller codes."""
    config = pub.load_config(config_path)
    config.arch = pub.augment_arch_defaults(config.arch)
    torch.manual_seed(0)
    model = pub.get_rqvae(config.arch)
    with torch.no_grad():
        for name, p in model.named_parameters():  # the shared codebook once
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape) * (0.2 if p.ndim > 1 else 0.1) + base)
        codebook = model.quantizer.codebooks[0].weight
        scales = torch.logspace(np.log10(0.3), np.log10(1.5), N_EMBED).unsqueeze(1)
        codebook[:-1] = torch.randn(N_EMBED, EMBED_DIM) * scales
        codebook[-1] = 0.0  # the padding row, as padding_idx initialises it
        for name, buffer in model.named_buffers():  # training-only EMA state: random, so a converter must drop it
            buffer.copy_(torch.rand(buffer.shape))
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.copy_(tensor.half().float())
    return model.eval()


def run_reference(model: torch.nn.Module, pixels: np.ndarray) -> dict[str, torch.Tensor]:
    """get_codes and decode_code on their input: ToTensor (/255) then Normalize(0.5, 0.5), to [-1, 1]. The margin
    is, per id, the gap between the two smallest distances their compute_distances gives at that depth."""
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5).contiguous()
    with torch.no_grad():
        codes = model.get_codes(x)
        reconstruction = model.decode_code(codes)
        residual = model.encode(x).clone()
        margins, again, padding_nearest = [], [], 0
        for codebook in model.quantizer.codebooks:
            distances = codebook.compute_distances(residual)
            padding_nearest += int((residual - codebook.weight[-1]).pow(2).sum(-1).lt(distances.min(-1).values).sum())
            two = distances.topk(2, dim=-1, largest=False).values
            margins.append(two[..., 1] - two[..., 0])
            again.append(distances.argmin(dim=-1))
            residual -= codebook.embed(again[-1])
    assert torch.equal(torch.stack(again, dim=-1), codes)
    print(f"ids whose residual is nearer the padding row than any code (a converter keeping the row would differ "
          f"there): {padding_nearest} of {codes.numel()}")
    return {"ids": codes.long().contiguous(), "reconstruction": reconstruction.contiguous(),
            "margin": torch.stack(margins, dim=-1).contiguous()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help=f"a checkout of kakaobrain/rq-vae-transformer at {COMMIT}")
    repo = parser.parse_args().repo.resolve()
    pub = import_publisher(repo)
    config_path = OUT / "rqvae_tiny.yaml"
    write_config(pub, repo, config_path)
    model = reference_model(pub, config_path)
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGES, DDCONFIG["resolution"], DDCONFIG["resolution"], 3),
                                               dtype=np.uint8)
    reference = run_reference(model, pixels)
    state = model.state_dict()
    tensors = {f"state_dict.{k}": v.half().clone().contiguous() for k, v in state.items()}
    tensors.update({"pixels": torch.from_numpy(pixels), **reference})
    save_file(tensors, str(OUT / "rqvae_tiny.safetensors"), metadata={
        "source": f"kakaobrain/rq-vae-transformer@{COMMIT}", "script": "tests/golden/make_rqvae_golden.py"})
    size = (OUT / "rqvae_tiny.safetensors").stat().st_size
    used = [len(reference["ids"][..., d].unique()) for d in range(DEPTH)]
    print(f"wrote {OUT / 'rqvae_tiny.safetensors'} ({size:,} bytes); codes used per depth {used} of {N_EMBED}; "
          f"smallest top-2 distance margin {reference['margin'].min().item():.3g}")


if __name__ == "__main__":
    main()
