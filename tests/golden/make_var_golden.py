"""Writes tests/golden/var_tiny.safetensors and var_release_shapes.json: a tiny random-weight VAR VQVAE built and
run with the publisher's code, and the key -> shape list of the released model.

Publisher's code: https://github.com/FoundationVision/VAR at commit 78b95394fc5896192e3a003e4b295f8ea743c48f
(2025-11-10): models/vqvae.py (VQVAE: img_to_idxBl, idxBl_to_img), models/quant.py (VectorQuantizer2, Phi,
PhiPartiallyShared, PhiNonShared), models/basic_vae.py (Encoder, Decoder). Their code is not part of this
repository; to re-create the files:

    git clone https://github.com/FoundationVision/VAR /tmp/pub/FoundationVision+VAR
    git -C /tmp/pub/FoundationVision+VAR checkout 78b95394fc5896192e3a003e4b295f8ea743c48f
    PYTHONPATH=/tmp/pub/FoundationVision+VAR python tests/golden/make_var_golden.py   # needs torch, numpy

VQVAE fixes its encoder and decoder at ch_mult (1, 1, 2, 2, 4) and two ResNet blocks a level, which at the
GroupNorm's 32 groups is megabytes even at ch=32. The tiny model is VQVAE(..., share_quant_resi=4) with the
publisher's own Encoder and Decoder swapped in at ch_mult (1, 1), one block a level (attention at the last level
and in the middle, as VQVAE builds them): 2x downsampling, 16x16 images, an 8x8 grid and six scales
1, 2, 3, 4, 6, 8. Every parameter is random (norm affines, the phi convs, the 3x3 quant_conv too) and rounded to
float16 before the reference runs, so the stored float16 values are exactly the weights that produced the stored
ids and reconstructions. The released topology is covered by var_release_shapes.json, the state dict of
VQVAE(vocab_size=4096, z_channels=32, ch=160, share_quant_resi=4) built on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from models.basic_vae import Decoder, Encoder
from models.quant import PhiNonShared, PhiPartiallyShared
from models.vqvae import VQVAE
from safetensors.torch import save_file

OUT = Path(__file__).parent
SOURCE = "FoundationVision/VAR@78b95394fc5896192e3a003e4b295f8ea743c48f"
VOCAB, CVAE, SCALES, SIDE, IMAGES = 256, 8, (1, 2, 3, 4, 6, 8), 16, 5
DDCONFIG = {"ch": 32, "ch_mult": (1, 1), "num_res_blocks": 1, "dropout": 0.0, "in_channels": 3, "z_channels": CVAE,
            "using_sa": True, "using_mid_sa": True}
RELEASED = {"vocab_size": 4096, "z_channels": 32, "ch": 160, "share_quant_resi": 4,
            "v_patch_nums": (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)}


def reference_model() -> VQVAE:
    """The tiny VQVAE, every parameter random and float16-rounded; ema_vocab_hit_SV holds counts as in training."""
    torch.manual_seed(0)
    vae = VQVAE(vocab_size=VOCAB, z_channels=CVAE, ch=32, share_quant_resi=4, v_patch_nums=SCALES, test_mode=True)
    vae.encoder = Encoder(double_z=False, **DDCONFIG)
    vae.decoder = Decoder(**DDCONFIG)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            std = 0.5 if name == "quantize.embedding.weight" else 0.2 if p.ndim > 1 else 0.1
            p.copy_((torch.randn(p.shape) * std + base).half().float())
        vae.quantize.ema_vocab_hit_SV.copy_(torch.rand(len(SCALES), VOCAB) * 10)
    return vae.eval()


def publisher_input(pixels: np.ndarray) -> torch.Tensor:
    """Their data loader's input: transforms.ToTensor() (x / 255) then normalize_01_into_pm1 (x + x - 1)."""
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().float().div(255)
    return x.add(x).add_(-1)


def lookup_margins(vae: VQVAE, x: torch.Tensor) -> torch.Tensor:
    """Each lookup's gap between the nearest and second-nearest code, in their expression ||r||^2 + ||e||^2 - 2 r.e,
    scales concatenated as the ids are: where a gap is tiny, float rounding may pick the other code."""
    f = vae.quant_conv(vae.encoder(x))
    partial_sums = vae.quantize.f_to_idxBl_or_fhat(f, to_fhat=True)
    codes = vae.quantize.embedding.weight
    margins, before = [], torch.zeros_like(f)
    for side, f_hat in zip(SCALES, partial_sums):
        rest = f - before
        small = rest if side == SCALES[-1] else F.interpolate(rest, size=(side, side), mode="area")
        rows = small.permute(0, 2, 3, 1).reshape(-1, CVAE)
        distances = rows.square().sum(1, keepdim=True) + codes.square().sum(1) - 2 * rows @ codes.T
        top2 = distances.topk(2, dim=1, largest=False).values
        margins.append((top2[:, 1] - top2[:, 0]).reshape(x.shape[0], -1))
        before = f_hat
    return torch.cat(margins, dim=1)


def phi_schedules() -> dict[str, torch.Tensor]:
    """Which phi each scale uses, by their own classes: PhiPartiallyShared (share_quant_resi = K >= 2) and
    PhiNonShared (share_quant_resi = 0, K = default_qresi_counts or the number of scales), for S scales."""
    schedules = {}
    for name, cls in (("partially_shared", PhiPartiallyShared), ("non_shared", PhiNonShared)):
        for convs in range(1, 9):
            modules = [torch.nn.Identity() for _ in range(convs)]
            phi = cls(torch.nn.ModuleList(modules)) if cls is PhiPartiallyShared else cls(modules)
            for scales in range(2, 17):
                chosen = [phi[si / (scales - 1)] for si in range(scales)]
                index = [next(j for j, m in enumerate(modules) if m is c) for c in chosen]
                schedules[f"phi_schedule.{name}.{convs}.{scales}"] = torch.tensor(index)
    return schedules


def released_shapes() -> dict[str, list[int]]:
    with torch.device("meta"):
        vae = VQVAE(test_mode=True, **RELEASED)
    return {k: list(v.shape) for k, v in vae.state_dict().items()}


def main() -> None:
    vae = reference_model()
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGES, SIDE, SIDE, 3), dtype=np.uint8)
    x = publisher_input(pixels)
    with torch.no_grad():
        ids = torch.cat(vae.img_to_idxBl(x), dim=1)
        reconstruction = vae.idxBl_to_img(vae.img_to_idxBl(x), same_shape=True, last_one=True)
        margin = lookup_margins(vae, x)
    tensors = {f"state_dict.{k}": v.half().contiguous() for k, v in vae.state_dict().items()}
    tensors.update({"pixels": torch.from_numpy(pixels), "ids": ids.contiguous(),
                    "reconstruction": reconstruction.contiguous(), "margin": margin.contiguous(), **phi_schedules()})
    save_file(tensors, str(OUT / "var_tiny.safetensors"), metadata={
        "source": SOURCE, "script": "tests/golden/make_var_golden.py", "scales": ",".join(map(str, SCALES))})
    shapes = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in released_shapes().items())
    (OUT / "var_release_shapes.json").write_text(
        f'{{"source": {json.dumps(SOURCE)},\n "model": {json.dumps(RELEASED)},\n "shapes": {{\n{shapes}\n }}\n}}\n')
    size = (OUT / "var_tiny.safetensors").stat().st_size
    print(f"wrote {OUT / 'var_tiny.safetensors'} ({size:,} bytes): {ids.numel()} ids, smallest top-2 distance gap "
          f"{margin.min().item():.3g}, {int((margin < 1e-4).sum())} gaps under 1e-4")


if __name__ == "__main__":
    main()
