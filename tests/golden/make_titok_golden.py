"""Writes tests/golden/titok/{pixels,legacy}.{json,safetensors}: two tiny random-weight TiTok tokenizers built and run
with the publisher's code, one non-legacy (the decoder predicts pixels) and one legacy (logits over the MaskGIT-VQGAN
codes, decoded by that VQGAN's pixel decoder, as the released L-32/B-64/S-128).

Publisher's code: https://github.com/bytedance/1d-tokenizer at commit 942a96fbdd873780179d1b78d5462911528bf8c8
(2025-03-20): modeling/titok.py (TiTok, a PyTorchModelHubMixin), modeling/modules/blocks.py (TiTokEncoder,
TiTokDecoder), modeling/modules/maskgit_vqgan.py (the pixel decoder and quantizer) and
modeling/quantizer/quantizer.py (VectorQuantizer). Their code is not part of this repository; to re-create the files:

    git clone https://github.com/bytedance/1d-tokenizer /tmp/pub/bytedance+1d-tokenizer
    git -C /tmp/pub/bytedance+1d-tokenizer checkout 942a96fbdd873780179d1b78d5462911528bf8c8
    pip install omegaconf einops accelerate
    PYTHONPATH=/tmp/pub/bytedance+1d-tokenizer python tests/golden/make_titok_golden.py

Three things make the models tiny without changing what the code computes: blocks.py's size tables are read with
smaller numbers ("small" and "base" stand for the tiny encoder and decoder sizes below; nothing else in the file is
touched), TiTok's MaskGIT-VQGAN pixel decoder and pixel codebook are built with tiny sizes (titok.py hard-codes
MaskGIT's), and the package `modeling.modules` is entered without its __init__, which imports the training losses
(torchvision). The weights are rounded to float16 before the reference runs, so the stored float16 values are
exactly the weights that produced the stored ids and reconstructions. config.json is what TiTok.save_pretrained
writes (OmegaConf.to_container, unresolved `${...}` strings included).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PUBLISHER = Path("/tmp/pub/bytedance+1d-tokenizer")
COMMIT = "942a96fbdd873780179d1b78d5462911528bf8c8"
OUT = Path(__file__).parent / "titok"
SIDE, IMAGES = 16, 4
ENCODER = {"width": 16, "layers": 2, "heads": 2}  # stands for "small"
DECODER = {"width": 24, "layers": 1, "heads": 3}  # stands for "base"
PIXEL_DECODER = {"channel_mult": [2, 1, 1], "num_resolutions": 3, "dropout": 0.0, "hidden_channels": 32,
                 "num_channels": 3, "num_res_blocks": 1, "resolution": SIDE, "z_channels": 4}
MODELS = {
    "pixels": {"codebook_size": 64, "token_size": 6, "use_l2_norm": False, "commitment_cost": 0.25,
               "vit_enc_model_size": "small", "vit_dec_model_size": "base", "vit_enc_patch_size": 4,
               "vit_dec_patch_size": 8, "num_latent_tokens": 8, "finetune_decoder": False, "is_legacy": False},
    "legacy": {"codebook_size": 48, "token_size": 5, "use_l2_norm": True, "commitment_cost": 0.25,
               "vit_enc_model_size": "small", "vit_dec_model_size": "base", "vit_enc_patch_size": 4,
               "vit_dec_patch_size": 4, "num_latent_tokens": 5, "finetune_decoder": True},
}


def import_publisher() -> types.ModuleType:
    """modeling.titok, with blocks.py's size tables tiny and the pixel decoder tiny (see the module docstring)."""
    sys.path.insert(0, str(PUBLISHER))
    package = types.ModuleType("modeling.modules")
    package.__path__ = [str(PUBLISHER / "modeling/modules")]
    sys.modules["modeling.modules"] = package
    source = (PUBLISHER / "modeling/modules/blocks.py").read_text()
    tables = [(r'"small": 512,(\s*)"base": 768,', f'"small": {ENCODER["width"]},\\1"base": {DECODER["width"]},'),
              (r'"small": 8,(\s*)"base": 12,(\s*)"large": 24', f'"small": {ENCODER["layers"]},\\1"base": {DECODER["layers"]},\\2"large": 24'),
              (r'"small": 8,(\s*)"base": 12,(\s*)"large": 16', f'"small": {ENCODER["heads"]},\\1"base": {DECODER["heads"]},\\2"large": 16')]
    for pattern, replacement in tables:
        source, count = re.subn(pattern, replacement, source)
        assert count == 2, (pattern, count)  # TiTokEncoder's and TiTokDecoder's tables
    spec = importlib.util.spec_from_loader("modeling.modules.blocks", loader=None)
    blocks = importlib.util.module_from_spec(spec)
    blocks.__file__ = str(PUBLISHER / "modeling/modules/blocks.py")
    exec(compile(source, blocks.__file__, "exec"), blocks.__dict__)  # noqa: S102 (their blocks.py, sizes patched)
    sys.modules["modeling.modules.blocks"] = blocks
    from modeling import titok
    from omegaconf import OmegaConf

    full_decoder, full_quantizer = titok.Pixel_Decoder, titok.Pixel_Quantizer
    titok.Pixel_Decoder = lambda config: full_decoder(OmegaConf.create(PIXEL_DECODER))
    titok.Pixel_Quantizer = lambda num_embeddings, embedding_dim, commitment_cost: full_quantizer(
        num_embeddings, PIXEL_DECODER["z_channels"], commitment_cost)
    return titok


def release_config(vq_model: dict) -> dict:
    """The nested config of their infer yamls (configs/infer/TiTok/titok_l32.yaml), with a generator section whose
    image_seq_len is an OmegaConf interpolation, as their releases carry it."""
    return {"experiment": {"tokenizer_checkpoint": "tokenizer_titok_tiny.bin", "output_dir": "titok_tiny"},
            "model": {"vq_model": dict(vq_model),
                      "generator": {"model_type": "ViT", "num_steps": 8,
                                    "image_seq_len": "${model.vq_model.num_latent_tokens}"}},
            "dataset": {"preprocessing": {"crop_size": SIDE}}}


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values everywhere (norm affines too), rounded to float16; the ViTs' matrices large enough that
    attention depends on the image. The codebook is then the encoder's own outputs for other images plus noise, so
    that the images' tokens pick different codes."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if re.search(r"(ln_\w+|norm\w*)\.weight$", name) else 0.0
            scale = (0.6 if name.startswith(("encoder.", "decoder.")) else 0.2) if p.ndim > 1 else 0.1
            p.copy_((torch.randn(p.shape) * scale + base).half().float())
        others = torch.from_numpy(test_images(seed + 1, 32) / 255.0).float().permute(0, 3, 1, 2)
        z = model.encoder(pixel_values=others, latent_tokens=model.latent_tokens)
        z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codebook = model.quantize.embedding.weight
        picked = z[torch.randperm(z.shape[0])[: codebook.shape[0]]]
        codebook.copy_((picked + 0.05 * picked.std() * torch.randn(picked.shape)).half().float())
    return model.eval()


def test_images(seed: int = 0, count: int = IMAGES) -> np.ndarray:
    """8-bit images that differ in their large shapes (a random 4x4 colour layout each, plus noise): uniform noise
    alone looks alike to every latent token, which would then pick the same code for every image."""
    rng = np.random.default_rng(seed)
    layout = rng.integers(0, 256, (count, 4, 4, 3)).repeat(SIDE // 4, axis=1).repeat(SIDE // 4, axis=2)
    return np.clip(layout + rng.integers(-24, 25, layout.shape), 0, 255).astype(np.uint8)


def run_reference(model: torch.nn.Module, pixels: np.ndarray) -> dict[str, torch.Tensor]:
    """TiTok.encode and TiTok.decode_tokens on their [0, 1] input; margin: the gap between the two smallest of
    their distances per token (a near-tie could flip with float rounding)."""
    x = torch.from_numpy((pixels / 255.0).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        _, result = model.encode(x)
        ids = result["min_encoding_indices"]  # [B, 1, N]
        reconstruction = model.decode_tokens(ids)
        z = model.encoder(pixel_values=x, latent_tokens=model.latent_tokens)
        z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codes = model.quantize.embedding.weight
        if model.quantize.use_l2_norm:
            z, codes = torch.nn.functional.normalize(z, dim=-1), torch.nn.functional.normalize(codes, dim=-1)
        distances = torch.cdist(z.double(), codes.double()).pow(2)
        two = distances.topk(2, dim=1, largest=False).values
    return {"ids": ids.reshape(ids.shape[0], -1).long(), "reconstruction": reconstruction.contiguous(),
            "margin": (two[:, 1] - two[:, 0]).reshape(ids.shape[0], -1).float().contiguous()}


def main() -> None:
    titok = import_publisher()
    OUT.mkdir(exist_ok=True)
    pixels = test_images()
    for seed, (name, vq_model) in enumerate(MODELS.items()):
        model = perturbed(titok.TiTok(release_config(vq_model)), seed)
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)  # their PyTorchModelHubMixin release: config.json + model.safetensors
            config = json.loads((Path(folder) / "config.json").read_text())
            saved = load_file(str(Path(folder) / "model.safetensors"))
        reference = run_reference(model, pixels)
        tensors = {f"weights.{k}": v.half().contiguous() for k, v in saved.items()}
        tensors.update({"pixels": torch.from_numpy(pixels), **reference})
        save_file(tensors, str(OUT / f"{name}.safetensors"),
                  metadata={"source": f"bytedance/1d-tokenizer@{COMMIT}", "script": "tests/golden/make_titok_golden.py"})
        (OUT / f"{name}.json").write_text(json.dumps(config, indent=4) + "\n")
        size = (OUT / f"{name}.safetensors").stat().st_size
        print(f"{name}: {size:,} bytes, ids {reference['ids'].tolist()}, smallest distance margin "
              f"{reference['margin'].min().item():.3g}")


if __name__ == "__main__":
    main()
