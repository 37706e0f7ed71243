"""Emu3 converts with the ids of transformers' Emu3VQVAE: a tiny random Emu3VQVAE (temporal layers, spatial norms,
two-head attention at a level and in the middle) is saved with save_pretrained beside its Emu3ImageProcessor,
converted, and compared on the same 8-bit pixels with Emu3VQVAE.encode and Emu3VQVAE.decode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import image_tokenizer
from image_tokenizer import ConversionError
from image_tokenizer.cli import main

SIDE = 32


def emu3_reference(seed: int = 0, **overrides):
    from transformers import Emu3VQVAE, Emu3VQVAEConfig

    settings = {"codebook_size": 64, "embed_dim": 4, "latent_channels": 4, "base_channels": 32,
                "channel_multiplier": [1, 2], "num_res_blocks": 1, "attn_resolutions": [1], "hidden_size": 64,
                "num_attention_heads": 2, "temporal_downsample_factor": 4}
    model = Emu3VQVAE(Emu3VQVAEConfig(**{**settings, **overrides}))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random weights and BatchNorm statistics everywhere: no layer hides behind an identity
        for name, p in model.named_parameters():
            scale, base = (0.2, 0.0) if p.ndim > 1 else (0.1, 1.0 if "norm" in name and name.endswith("weight") else 0.0)
            p.copy_(torch.randn(p.shape, generator=generator) * scale + base)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=generator) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=generator) + 0.5)
    return model.eval()


def images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, SIDE, SIDE, 3), dtype=np.uint8)


def save(reference, folder) -> None:
    from transformers import Emu3ImageProcessor

    reference.save_pretrained(folder)
    Emu3ImageProcessor(min_pixels=SIDE * SIDE, max_pixels=SIDE * SIDE).save_pretrained(folder)


def reference_ids(reference, pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Emu3's own path: Emu3ImageProcessor, then Emu3VQVAE.encode; (pixel_values, ids [B, h, w])."""
    from transformers import Emu3ImageProcessor

    processed = Emu3ImageProcessor(min_pixels=SIDE * SIDE, max_pixels=SIDE * SIDE)(list(pixels), return_tensors="pt")
    with torch.no_grad():
        tokens = reference.encode(processed["pixel_values"], processed["image_sizes"]).image_tokens
    return processed["pixel_values"], torch.stack(tokens)


def test_emu3_converts_with_the_ids_and_reconstructions_of_emu3vqvae(tmp_path):
    reference = emu3_reference()
    save(reference, tmp_path / "emu3")
    tok = image_tokenizer.convert(tmp_path / "emu3", resolution=SIDE)  # auto-detected from model_type emu3_vqgan
    assert tok.config.architecture == "emu3" and tok.grid_size == (SIDE // 2, SIDE // 2)
    assert tok.config.preprocessing.alpha_background == (0, 0, 0)  # BAAI's processor: convert("RGB") drops alpha
    pixels = images()
    pixel_values, expected = reference_ids(reference, pixels)
    torch.testing.assert_close(torch.stack(tok.preprocess(list(pixels))[0]), pixel_values, atol=1e-6, rtol=0)
    ids = tok.encode(pixels)
    assert torch.equal(ids, expected), f"{(ids != expected).float().mean():.2%} of ids differ"
    with torch.no_grad():
        decoded = reference.decode(expected)
        torch.testing.assert_close(tok.model.decode_ids(expected), decoded, atol=1e-4, rtol=1e-4)
    card = (tok.card_info or {})["conversion"]
    assert card["format"] == "emu3" and "Apache-2.0" in card["license"] and "visual token" in card["ids"]


def test_emu3_temporal_layers_matter_and_are_collapsed_exactly(tmp_path):
    """With the temporal layers' weights changed, Emu3VQVAE's ids change, and the converted model follows: the
    collapsed single-frame path is the reference's computation, not an approximation that ignores those layers."""
    reference = emu3_reference(seed=3, temporal_downsample_factor=2, num_res_blocks=2)
    save(reference, tmp_path / "a")
    _, before = reference_ids(reference, images())
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if ".time_" in name:
                p.mul_(-1.5)
    save(reference, tmp_path / "b")
    _, after = reference_ids(reference, images())
    assert (before != after).float().mean() > 0.2
    tok = image_tokenizer.convert(tmp_path / "b", format="emu3", resolution=SIDE)
    assert torch.equal(tok.encode(images()), after)
    with torch.no_grad():
        torch.testing.assert_close(tok.model.decode_ids(after), reference.decode(after), atol=1e-4, rtol=1e-4)


def test_emu3_cli_writes_an_ordinary_tokenizer_with_its_card(tmp_path):
    save(emu3_reference(), tmp_path / "emu3")
    out = tmp_path / "ours"
    assert main(["convert", str(tmp_path / "emu3"), "--output", str(out), "--resolution", str(SIDE)]) == 0
    again = image_tokenizer.ImageTokenizer.from_pretrained(out)
    assert again.config.architecture == "emu3" and again.card_info["conversion"]["format"] == "emu3"
    card = (out / "README.md").read_text()
    assert "Apache-2.0" in card and "image-tokenizer convert" in card and "visual token" in card
    direct = image_tokenizer.convert(tmp_path / "emu3", resolution=SIDE)
    assert torch.equal(again.encode(images(2)), direct.encode(images(2)))


def test_a_full_emu3_folder_reads_the_vq_under_model_vqmodel(tmp_path):
    from safetensors.torch import save_file

    reference = emu3_reference()
    save(reference, tmp_path / "vq")
    folder = tmp_path / "emu3-full"
    save(reference, folder)  # the processor file; config and weights are replaced by a full model's
    (folder / "config.json").write_text(json.dumps({"model_type": "emu3", "vq_config": reference.config.to_dict()}))
    state = {f"model.vqmodel.{k}": v.contiguous() for k, v in reference.state_dict().items()}
    state["model.text_model.embed_tokens.weight"] = torch.zeros(4, 4)  # other parts of the model are not read
    (folder / "model.safetensors").unlink()
    save_file(state, str(folder / "model.safetensors"))
    a, b = (image_tokenizer.convert(tmp_path / name, resolution=SIDE) for name in ("vq", "emu3-full"))
    assert torch.equal(a.encode(images(2)), b.encode(images(2)))


def test_emu3_skips_batchnorm_counters_and_refuses_unknown_keys(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    save(emu3_reference(), tmp_path / "emu3")
    image_tokenizer.convert(tmp_path / "emu3", resolution=SIDE)
    assert "skipping training-only keys" in capsys.readouterr().err
    file = tmp_path / "emu3" / "model.safetensors"
    state = load_file(str(file))
    state["discriminator.conv.weight"] = torch.zeros(1)
    save_file(state, str(file))
    with pytest.raises(ConversionError, match="discriminator.conv.weight"):
        image_tokenizer.convert(tmp_path / "emu3")


def test_emu3_hidden_size_must_be_the_attention_width(tmp_path):
    save(emu3_reference(), tmp_path / "emu3")
    config_file = tmp_path / "emu3" / "config.json"
    config = json.loads(config_file.read_text())
    config["hidden_size"] = 48
    config_file.write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="hidden_size 48"):
        image_tokenizer.convert(tmp_path / "emu3")
