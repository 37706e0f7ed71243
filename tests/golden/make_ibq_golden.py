"""Writes tests/golden/ibq_tiny.{safetensors,yaml}: a tiny random-weight IBQ built and run with the publisher's code.

Publisher's code: https://github.com/TencentARC/SEED-Voken at commit b9a17eac8e2c0779c12a5429b0bfd6c502788484
(2025-10-22), modules src/IBQ/modules/diffusionmodules/model.py (Encoder, Decoder) and
src/IBQ/modules/vqvae/quantize.py (IndexPropagationQuantize), as src/IBQ/models/ibqgan.py's IBQ wires them;
the yaml is configs/IBQ/gpu/imagenet_ibqgan_16384.yaml with tiny shapes. Their code is not part of this
repository; to re-create the files:

    git clone https://github.com/TencentARC/SEED-Voken /tmp/seedvoken
    git -C /tmp/seedvoken checkout b9a17eac8e2c0779c12a5429b0bfd6c502788484
    PYTHONPATH=/tmp/seedvoken python tests/golden/make_ibq_golden.py   # needs torch, numpy, einops, pyyaml

The weights are rounded to float16 before the reference runs, so the stored float16 values are exactly the
weights that produced the stored ids and reconstructions (the test widens them back to float32).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from src.IBQ.modules.diffusionmodules.model import Decoder, Encoder
from src.IBQ.modules.vqvae.quantize import IndexPropagationQuantize

SEED_VOKEN = Path("/tmp/seedvoken")
OUT = Path(__file__).parent
DDCONFIG = {"double_z": False, "z_channels": 16, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [16], "dropout": 0.0}
N_EMBED, EMBED_DIM, IMAGES = 1024, 16, 3


def reference_model() -> torch.nn.ModuleDict:
    """IBQ's inference parts under the names IBQ (a LightningModule) gives them in its state_dict."""
    torch.manual_seed(0)
    parts = torch.nn.ModuleDict({
        "encoder": Encoder(**DDCONFIG), "decoder": Decoder(**DDCONFIG),
        "quantize": IndexPropagationQuantize(N_EMBED, EMBED_DIM, beta=0.25, use_entropy_loss=False),
        "quant_conv": torch.nn.Conv2d(DDCONFIG["z_channels"], EMBED_DIM, 1),
        "post_quant_conv": torch.nn.Conv2d(EMBED_DIM, DDCONFIG["z_channels"], 1),
    })
    with torch.no_grad():  # random everywhere (norm affines too), rounded to float16
        for name, p in parts.named_parameters():
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_((torch.randn(p.shape) * (0.2 if p.ndim > 1 else 0.1) + base).half().float())
    return parts.eval()


def run_reference(parts: torch.nn.ModuleDict, pixels: np.ndarray) -> dict[str, torch.Tensor]:
    """IBQ.encode and IBQ.decode on the publisher's [-1, 1] input (image / 127.5 - 1, as their data loaders)."""
    x = torch.from_numpy((pixels / 127.5 - 1.0).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        h = parts["quant_conv"](parts["encoder"](x))
        _, _, (_, _, ind) = parts["quantize"](h)
        b, _, gh, gw = h.shape
        codes = parts["quantize"].get_codebook_entry(ind.flatten(), (b, gh, gw, EMBED_DIM))
        reconstruction = parts["decoder"](parts["post_quant_conv"](codes))
        logits = torch.einsum("b d h w, n d -> b n h w", h, parts["quantize"].embedding.weight)
        top2 = logits.topk(2, dim=1).values
    return {"ids": ind.reshape(b, gh, gw).long(), "reconstruction": reconstruction.contiguous(),
            "margin": (top2[:, 0] - top2[:, 1]).contiguous()}


def tiny_yaml() -> str:
    """The publisher's IBQ-16384 yaml with the tiny shapes (model section only matters to the converter)."""
    config = yaml.safe_load((SEED_VOKEN / "configs/IBQ/gpu/imagenet_ibqgan_16384.yaml").read_text())
    model = copy.deepcopy(config["model"])
    model["init_args"].update({"ddconfig": DDCONFIG, "n_embed": N_EMBED, "embed_dim": EMBED_DIM})
    data = config["data"]
    for split in ("train", "validation", "test"):
        data["init_args"][split]["params"]["config"]["size"] = DDCONFIG["resolution"]
    return yaml.safe_dump({"model": model, "data": data}, sort_keys=False)


def main() -> None:
    parts = reference_model()
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGES, 32, 32, 3), dtype=np.uint8)
    reference = run_reference(parts, pixels)
    tensors = {f"state_dict.{k}": v.half().contiguous() for k, v in parts.state_dict().items()}
    tensors.update({"pixels": torch.from_numpy(pixels), **reference})
    save_file(tensors, str(OUT / "ibq_tiny.safetensors"), metadata={
        "source": "TencentARC/SEED-Voken@b9a17eac8e2c0779c12a5429b0bfd6c502788484",
        "script": "tests/golden/make_ibq_golden.py"})
    (OUT / "ibq_tiny.yaml").write_text(tiny_yaml())
    size = (OUT / "ibq_tiny.safetensors").stat().st_size
    print(f"wrote {OUT / 'ibq_tiny.safetensors'} ({size:,} bytes), smallest top-2 logit margin "
          f"{reference['margin'].min().item():.3g}")


if __name__ == "__main__":
    main()
