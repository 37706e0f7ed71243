"""Writes tests/golden/cosmos/: a tiny random-weight Cosmos discrete image tokenizer, exported as NVIDIA publishes
it (TorchScript encoder.jit / decoder.jit), and what the publisher's own code computes from it.

Reference code: https://github.com/NVIDIA/Cosmos-Tokenizer at commit 3584ae752ce8ebdbe06a420bf60d7513c0e878cc
(cosmos_tokenizer/networks/discrete_image.py DiscreteImageTokenizer, its encoder_jit() and decoder_jit()). That code
is not part of this repository: check it out elsewhere and pass its folder (it needs einops and loguru):

    python tests/golden/make_cosmos_golden.py --cosmos-repo /tmp/cosmos

The model has Cosmos-DI's layout at the smallest width GroupNorm(32) allows: Haar wavelet patching of 4, two levels
of 32 channels with attention at the second and no halving (downsample_levels=0, like DI8x8's levels that do not
halve), FSQ levels [8, 5, 5, 5] (even and odd levels as in [8, 8, 8, 5, 5, 5], with 1,000 codes instead of 64,000:
the archives hold the implicit codebook, 64,000 x 6 floats each). The repository cannot script its Patcher
(torch.jit.script fails on its `range` attribute), so the archives are traced, in bfloat16 as the publisher's
library runs them; the reference outputs come from the same weights (bfloat16-exact) in float32.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).parent / "cosmos"
CONFIG = {
    "attn_resolutions": [16], "channels": 32, "channels_mult": [1, 1], "dropout": 0.0, "in_channels": 3,
    "spatial_compression": 4, "num_res_blocks": 1, "out_channels": 3, "resolution": 64, "patch_size": 4,
    "patch_method": "haar", "z_channels": 16, "z_factor": 1, "quantizer": "FSQ", "embedding_dim": 4,
    "levels": [8, 5, 5, 5], "name": "DI", "encoder": "Default", "decoder": "Default",
}
IMAGES, SIDE = 2, 64


def build(repo: Path) -> torch.nn.Module:
    sys.path.insert(0, str(repo))
    from cosmos_tokenizer.networks.discrete_image import DiscreteImageTokenizer

    torch.manual_seed(0)
    model = DiscreteImageTokenizer(**CONFIG).eval()
    with torch.no_grad():  # random weights everywhere (norm affines too), exact in bfloat16
        for name, p in model.named_parameters():
            scale, base = (0.2, 0.0) if p.ndim > 1 else (0.1, 1.0 if "norm" in name and name.endswith("weight") else 0.0)
            p.copy_((torch.randn(p.shape) * scale + base).bfloat16().float())
    return model.to(dtype=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cosmos-repo", type=Path, required=True)
    model = build(parser.parse_args().cosmos_repo)
    pixels = torch.randint(0, 256, (IMAGES, 3, SIDE, SIDE), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    x = (pixels.double() / 255.0 * 2.0 - 1.0).float()  # cosmos_tokenizer.utils.numpy2tensor
    with torch.no_grad():
        latent = model.quant_conv(model.encoder(x))
        ids, codes, _ = model.quantizer(latent)
        reconstruction = model.decode_code(ids)
    OUT.mkdir(exist_ok=True)
    save_file({"pixels": pixels, "latent": latent.contiguous(), "ids": ids.long().contiguous(), "codes": codes.contiguous(),
               "reconstruction": reconstruction.contiguous()}, str(OUT / "reference.safetensors"))
    model.to(dtype=torch.bfloat16)
    with torch.no_grad():
        encoder = torch.jit.trace(model.encoder_jit(), x.bfloat16())
        decoder = torch.jit.trace(model.decoder_jit(), ids)
        agree = (encoder(x.bfloat16())[0] == ids).float().mean().item()
    torch.jit.save(encoder, str(OUT / "encoder.jit"))
    torch.jit.save(decoder, str(OUT / "decoder.jit"))
    print(f"wrote {OUT}: {ids.numel()} ids; the bfloat16 archive gives the float32 ids for {agree:.1%} of them")


if __name__ == "__main__":
    main()
