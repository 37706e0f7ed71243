"""Published formats convert with identical ids: each reference is built with its real implementation
(transformers' JanusVQVAE and ChameleonVQVAE, diffusers' VQModel) at tiny random-weight sizes, saved in its
native format, converted, and compared. taming and LlamaGen cannot be installed here, so their checkpoints are
written in their own key layouts from a reference whose numerics are known (diffusers' VQModel, which is
taming's architecture, and transformers' Janus, which is LlamaGen's VQ-16)."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import image_tokenizer
from image_tokenizer import ConversionError, ImageTokenizer, NoDecoderError
from image_tokenizer.cli import main
from image_tokenizer.errors import CheckpointError

SIDE = 32


def pixels(n: int = 3, side: int = SIDE) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (norm affines included), so no layer can hide behind an identity init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.2 if p.ndim > 1 else 0.1) + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model.eval()


def nearest(z: torch.Tensor, codes: torch.Tensor, l2: bool) -> torch.Tensor:
    """float64 brute-force nearest code of each latent vector [B, D, h, w] -> ids [B, h, w]."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
    codes = codes.double()
    if l2:
        flat, codes = F.normalize(flat, dim=-1), F.normalize(codes, dim=-1)
    return torch.cdist(flat, codes).argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])


def assert_same_ids(ours: torch.Tensor, reference: torch.Tensor) -> None:
    flips = (ours != reference).float().mean().item()
    assert flips < 0.005, f"{flips:.2%} of ids differ"


# ----- reference builders -----
def janus_reference():
    from transformers import JanusVQVAE, JanusVQVAEConfig

    config = JanusVQVAEConfig(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32,
                              channel_multiplier=[1, 2], num_res_blocks=1, num_patches=SIDE // 2)
    return randomize(JanusVQVAE(config))


def chameleon_reference():
    from transformers import ChameleonVQVAE, ChameleonVQVAEConfig

    config = ChameleonVQVAEConfig(embed_dim=16, num_embeddings=64, latent_channels=32, resolution=SIDE,
                                  base_channels=32, channel_multiplier=[1, 2], num_res_blocks=1, attn_resolutions=[SIDE])
    return randomize(ChameleonVQVAE(config))


def diffusers_reference(**overrides):
    from diffusers import VQModel

    settings = {"block_out_channels": (32, 64), "layers_per_block": 1, "latent_channels": 16, "num_vq_embeddings": 64,
                "vq_embed_dim": 8, "sample_size": SIDE, "down_block_types": ("DownEncoderBlock2D",) * 2,
                "up_block_types": ("UpDecoderBlock2D",) * 2}
    settings.update(overrides)
    return randomize(VQModel(**settings))


def assert_matches_diffusers(tok: ImageTokenizer, reference, x: torch.Tensor) -> None:
    """Same ids as a diffusers VQModel (near-tie flips under 0.5 %) and reconstructions within 1e-4."""
    with torch.no_grad():
        latent = reference.encode(x).latents
        expected = reference.quantize(latent)[2][2].reshape(x.shape[0], 16, 16)
        assert_same_ids(tok.model.encode_ids(x), expected)
        torch.testing.assert_close(tok.model.decode_ids(expected), reference.decode(latent).sample, atol=1e-4, rtol=1e-4)


# ----- transformers: Janus -----
def test_janus_converts_with_the_original_l2_normalised_ids(tmp_path):
    reference = janus_reference()
    reference.save_pretrained(tmp_path / "janus")
    tok = image_tokenizer.convert(tmp_path / "janus")
    assert tok.config.quantizer.l2_normalize and tok.config.resolution == SIDE and tok.grid_size == (16, 16)
    x = pixels()
    with torch.no_grad():
        latent = reference.quant_conv(reference.encoder(x))
        expected = nearest(latent, reference.quantize.embedding.weight, l2=True)  # original Janus / LlamaGen lookup
        ids = tok.model.encode_ids(x)
        assert_same_ids(ids, expected)
        decoded = reference.decode(expected.reshape(3, -1))  # transformers normalises the codes when decoding
        torch.testing.assert_close(tok.model.decode_ids(expected), decoded, atol=1e-4, rtol=1e-4)


def test_transformers_janus_encode_agrees_with_the_original_only_for_unit_length_codes(tmp_path):
    """transformers' JanusVQVAE.encode skips the l2 normalisation that Janus and LlamaGen apply. For unit-length
    codes the two lookups pick the same code (||z - e||^2 = |z|^2 + 1 - 2 z.e: the argmin is the cosine argmax);
    for other codes they differ, and the original (normalised) lookup is the one the weights were trained with."""
    reference = janus_reference()
    x = pixels()
    with torch.no_grad():
        plain = reference.encode(x).image_tokens.reshape(3, 16, 16)
        latent = reference.quant_conv(reference.encoder(x))
        original = nearest(latent, reference.quantize.embedding.weight, l2=True)
        assert (plain != original).float().mean() > 0.05  # random non-unit codes: the port's ids are not Janus's
        reference.quantize.embedding.weight.copy_(F.normalize(reference.quantize.embedding.weight, dim=-1))
        plain = reference.encode(x).image_tokens.reshape(3, 16, 16)
    reference.save_pretrained(tmp_path / "janus")
    tok = image_tokenizer.convert(tmp_path / "janus", format="janus")
    with torch.no_grad():
        assert_same_ids(tok.model.encode_ids(x), plain)


def test_full_janus_folder_reads_the_vq_under_model_vqmodel(tmp_path):
    from safetensors.torch import save_file

    reference = janus_reference()
    reference.save_pretrained(tmp_path / "vq")
    folder = tmp_path / "janus-full"
    folder.mkdir()
    vq_config = reference.config.to_dict()
    (folder / "config.json").write_text(__import__("json").dumps({"model_type": "janus", "vq_config": vq_config}))
    state = {f"model.vqmodel.{k}": v.contiguous() for k, v in reference.state_dict().items()}
    state["model.language_model.embed_tokens.weight"] = torch.zeros(4, 4)  # other parts of the model are ignored
    save_file(state, str(folder / "model.safetensors"))
    a, b = image_tokenizer.convert(tmp_path / "vq"), image_tokenizer.convert(folder)
    assert torch.equal(a.model.encode_ids(pixels()), b.model.encode_ids(pixels()))


# ----- transformers: Chameleon (encoder only) -----
def test_chameleon_converts_encoder_only_and_refuses_to_decode(tmp_path):
    reference = chameleon_reference()
    reference.save_pretrained(tmp_path / "chameleon")
    tok = image_tokenizer.convert(tmp_path / "chameleon")
    assert tok.config.encoder_only and not tok.config.quantizer.l2_normalize
    x = pixels()
    with torch.no_grad():
        expected = reference.encode(x).image_tokens.reshape(3, 16, 16)
        assert_same_ids(tok.model.encode_ids(x), expected)
    batch = tok(np.zeros((2, SIDE, SIDE, 3), np.uint8), return_tensors="pt")
    assert batch["input_ids"].shape == (2, 16 * 16 + 2)
    with pytest.raises(NoDecoderError, match="encoder-only"):
        tok.decode(expected[0])
    import datasets

    from image_tokenizer.pretokenize import pretokenize

    images = datasets.Dataset.from_dict({"image": [np.zeros((SIDE, SIDE, 3), np.uint8)] * 2}).cast_column("image", datasets.Image())
    tokens = pretokenize(images, tok, load_from_cache_file=False)
    assert len(tokens) == 2 and len(tokens[0]["input_ids"]) == 16 * 16
    tok.save_pretrained(tmp_path / "ours")
    again = ImageTokenizer.from_pretrained(tmp_path / "ours")
    assert torch.equal(again.encode(np.zeros((SIDE, SIDE, 3), np.uint8)), tok.encode(np.zeros((SIDE, SIDE, 3), np.uint8)))
    with pytest.raises(NoDecoderError):
        again.batch_decode(batch["input_ids"])


def test_chameleon_preprocessing_is_its_image_processor(tmp_path):
    from transformers import ChameleonImageProcessor

    chameleon_reference().save_pretrained(tmp_path / "chameleon")
    tok = image_tokenizer.convert(tmp_path / "chameleon", resolution=SIDE)
    image = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    processor = ChameleonImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    theirs = processor(image, return_tensors="pt")["pixel_values"][0]
    ours = tok.preprocess(image)[0][0]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


# ----- diffusers -----
@pytest.mark.parametrize("attention", ["to_q", "query"])
def test_diffusers_vqmodel_converts_with_identical_ids_and_reconstructions(tmp_path, attention):
    reference = diffusers_reference()
    reference.save_pretrained(tmp_path / "vq")
    if attention == "query":  # the attention names of diffusers before 0.14
        from safetensors.torch import load_file, save_file

        file = tmp_path / "vq" / "diffusion_pytorch_model.safetensors"
        old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
        state = {re.sub(r"\.(to_q|to_k|to_v|to_out\.0)\.", lambda m: f".{old[m[1]]}.", k): v for k, v in load_file(str(file)).items()}
        save_file(state, str(file))
    tok = image_tokenizer.convert(tmp_path / "vq")
    x = pixels()
    with torch.no_grad():
        latent = reference.encode(x).latents
        _, _, (_, _, expected) = reference.quantize(latent)
        expected = expected.reshape(3, 16, 16)
        assert_same_ids(tok.model.encode_ids(x), expected)
        decoded = reference.decode(latent).sample
        torch.testing.assert_close(tok.model.decode_ids(expected), decoded, atol=1e-4, rtol=1e-4)


def test_diffusers_attention_in_down_and_up_blocks(tmp_path):
    reference = diffusers_reference(down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                                    up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"))
    reference.save_pretrained(tmp_path / "vq")
    tok = image_tokenizer.convert(tmp_path / "vq", format="diffusers")
    assert tok.config.attn_resolutions == (SIDE // 2,)
    x = pixels()
    assert_matches_diffusers(tok, reference, x)


def test_diffusers_movq_is_refused(tmp_path):
    diffusers_reference().save_pretrained(tmp_path / "vq")
    config = tmp_path / "vq" / "config.json"
    config.write_text(config.read_text().replace('"norm_type": "group"', '"norm_type": "spatial"'))
    with pytest.raises(ConversionError, match="spatial"):
        image_tokenizer.convert(tmp_path / "vq")


# ----- taming (checkpoint written in taming's layout from diffusers' numerics) -----
def diffusers_to_taming(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """taming's key names for a diffusers VQModel state dict (the inverse of diffusers' own conversion script)."""
    attention = {"to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out", "group_norm": "norm"}
    out = {}
    for key, tensor in state.items():
        k = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        k = re.sub(r"mid_block\.resnets\.(\d)", lambda m: f"mid.block_{int(m[1]) + 1}", k)
        k = re.sub(r"mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0|group_norm)", lambda m: f"mid.attn_1.{attention[m[1]]}", k)
        k = re.sub(r"down_blocks\.(\d+)\.resnets\.(\d+)", r"down.\1.block.\2", k)
        k = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0", r"down.\1.downsample", k)
        k = re.sub(r"up_blocks\.(\d+)\.resnets\.(\d+)", lambda m: f"up.{levels - 1 - int(m[1])}.block.{m[2]}", k)
        k = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0", lambda m: f"up.{levels - 1 - int(m[1])}.upsample", k)
        if re.search(r"\.(q|k|v|proj_out)\.weight$", k) and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]
        out[k] = tensor
    return out


TAMING_YAML = """model:
  base_learning_rate: 4.5e-06
  target: {target}
  params:
    embed_dim: 8
    n_embed: 64
{extra}    ddconfig:
      double_z: false
      z_channels: 16
      resolution: {side}
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 2]
      num_res_blocks: 1
      attn_resolutions: []
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {{disc_start: 10000}}
"""


def write_taming_log(folder, reference, target="taming.models.vqgan.VQModel", extra=""):
    (folder / "configs").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "configs" / "2020-11-09T13-31-51-project.yaml").write_text(
        TAMING_YAML.format(target=target, extra=extra, side=SIDE))
    state = diffusers_to_taming(reference.state_dict(), 2)
    state["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)  # training-only entries are dropped
    torch.save({"state_dict": state, "global_step": 10, "hparams": argparse.Namespace(lr=1e-4)},
               folder / "checkpoints" / "last.ckpt")


def test_taming_log_folder_converts_with_identical_ids(tmp_path):
    reference = diffusers_reference()
    write_taming_log(tmp_path / "logs", reference)
    tok = image_tokenizer.convert(tmp_path / "logs")
    assert tok.card_info["conversion"]["format"] == "taming"
    x = pixels()
    assert_matches_diffusers(tok, reference, x)
    # the checkpoint file alone finds its config in the log folder
    by_file = image_tokenizer.convert(tmp_path / "logs" / "checkpoints" / "last.ckpt", format="taming")
    assert torch.equal(by_file.model.encode_ids(x), tok.model.encode_ids(x))


def test_taming_reference_implementation_when_installed(tmp_path):
    """The same check against taming's own modules, where `taming-transformers` is importable (it needs only
    torch and numpy for these modules, but its package pulls in torchvision and Lightning, so the suite does not
    install it: `pip install --no-deps taming-transformers` runs this test)."""
    model = pytest.importorskip("taming.modules.diffusionmodules.model")
    quantize = pytest.importorskip("taming.modules.vqvae.quantize")
    dd = {"double_z": False, "z_channels": 16, "resolution": SIDE, "in_channels": 3, "out_ch": 3, "ch": 32,
          "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    parts = torch.nn.ModuleDict({
        "encoder": model.Encoder(**dd), "decoder": model.Decoder(**dd), "quantize": quantize.VectorQuantizer(64, 8, 0.25),
        "quant_conv": torch.nn.Conv2d(16, 8, 1), "post_quant_conv": torch.nn.Conv2d(8, 16, 1),
    })
    randomize(parts)
    folder = tmp_path / "logs"
    (folder / "configs").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "configs" / "x-project.yaml").write_text(TAMING_YAML.format(target="taming.models.vqgan.VQModel", extra="", side=SIDE))
    torch.save({"state_dict": {**parts.state_dict(), "loss.logvar": torch.zeros(())}}, folder / "checkpoints" / "last.ckpt")
    tok = image_tokenizer.convert(folder)
    x = pixels()
    with torch.no_grad():
        quant, _, (_, _, expected) = parts["quantize"](parts["quant_conv"](parts["encoder"](x)))
        expected = expected.reshape(3, 16, 16)
        assert_same_ids(tok.model.encode_ids(x), expected)
        decoded = parts["decoder"](parts["post_quant_conv"](quant))
        torch.testing.assert_close(tok.model.decode_ids(expected), decoded, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("target, extra, message", [
    ("taming.models.vqgan.GumbelVQ", "", "Gumbel"),
    ("taming.models.vqgan.VQModel", "    remap: data/imagenet_remap.npy\n", "remap"),
])
def test_taming_gumbel_and_remap_variants_are_refused(tmp_path, target, extra, message):
    write_taming_log(tmp_path / "logs", diffusers_reference(), target=target, extra=extra)
    with pytest.raises(ConversionError, match=message):
        image_tokenizer.convert(tmp_path / "logs")


# ----- LlamaGen (its own key layout, from the Janus reference: Janus's VQ is LlamaGen's VQ-16) -----
def janus_to_llamagen(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    mid = {"block_1": "0", "attn_1": "1", "block_2": "2"}
    out = {}
    for key, tensor in state.items():
        k = re.sub(r"(encoder|decoder)\.mid\.(block_1|attn_1|block_2)", lambda m: f"{m[1]}.mid.{mid[m[2]]}", key)
        k = re.sub(r"encoder\.down\.(\d+)\.block", r"encoder.conv_blocks.\1.res", k)
        k = re.sub(r"encoder\.down\.(\d+)\.", r"encoder.conv_blocks.\1.", k)
        k = re.sub(r"decoder\.up\.(\d+)\.block", r"decoder.conv_blocks.\1.res", k)  # both store lowest level first
        k = re.sub(r"decoder\.up\.(\d+)\.", r"decoder.conv_blocks.\1.", k)
        out[k] = tensor
    out["quantize.codebook_used"] = torch.zeros(65536)
    return out


def test_llamagen_checkpoint_converts_to_the_same_tokenizer_as_its_janus_equivalent(tmp_path):
    reference = janus_reference()
    reference.save_pretrained(tmp_path / "janus")
    state = janus_to_llamagen(reference.state_dict(), 2)
    torch.save({"model": state, "steps": 100, "args": argparse.Namespace(vq_model="VQ-16")}, tmp_path / "vq_ds16_c2i.pt")
    janus = image_tokenizer.convert(tmp_path / "janus")
    llamagen = image_tokenizer.convert(tmp_path / "vq_ds16_c2i.pt", resolution=SIDE)
    assert llamagen.card_info["conversion"]["format"] == "llamagen"
    assert janus.config.to_dict() == llamagen.config.to_dict()
    ours, theirs = janus.model.state_dict(), llamagen.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_llamagen_config_that_disagrees_with_the_weights_is_refused(tmp_path):
    reference = janus_reference()
    folder = tmp_path / "llamagen"
    folder.mkdir()
    torch.save({"ema": janus_to_llamagen(reference.state_dict(), 2)}, folder / "vq.pt")
    (folder / "config.json").write_text('{"codebook_size": 16384, "codebook_embed_dim": 8}')
    with pytest.raises(ConversionError, match="codebook_size is 16384 but the weights"):
        image_tokenizer.convert(folder)
    (folder / "config.json").write_text('{"codebook_size": 64, "codebook_l2_norm": false}')
    assert not image_tokenizer.convert(folder).config.quantizer.l2_normalize


def test_converted_tokenizers_see_transparency_as_their_publishers_do(tmp_path):
    """Converted ids never follow our default for new tokenizers (white): taming, LlamaGen, diffusers and Janus
    load images with PIL's convert("RGB"), which leaves a transparent (0, 0, 0, 0) pixel black; Chameleon's
    image processor composites onto white."""
    from PIL import Image

    rgba = np.zeros((SIDE, SIDE, 4), np.uint8)  # transparent (0, 0, 0, 0), as PNG writers leave it
    rgba[8:12, 4:28] = (30, 200, 90, 255)  # an opaque stroke
    image = Image.fromarray(rgba, "RGBA")
    dropped = np.asarray(image.convert("RGB"))  # what their loaders hand the model
    white = np.asarray(Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB"))
    janus = janus_reference()
    janus.save_pretrained(tmp_path / "janus")
    torch.save({"model": janus_to_llamagen(janus.state_dict(), 2)}, tmp_path / "vq_ds16_c2i.pt")
    diffusers_reference().save_pretrained(tmp_path / "vq")
    write_taming_log(tmp_path / "logs", diffusers_reference())
    chameleon_reference().save_pretrained(tmp_path / "chameleon")
    sources = {"janus": dropped, "vq_ds16_c2i.pt": dropped, "vq": dropped, "logs": dropped, "chameleon": white}
    for name, theirs in sources.items():
        tok = image_tokenizer.convert(tmp_path / name, resolution=SIDE)
        assert tok.config.preprocessing.alpha_background == ((255,) * 3 if name == "chameleon" else (0, 0, 0)), name
        assert torch.equal(tok.encode(image), tok.encode(theirs)), name


def test_decoder_ch_mult_may_differ_from_the_encoders():
    """LlamaGen's ModelArgs allow a decoder wider than the encoder; our config says so with decoder_ch_mult."""
    from image_tokenizer import ImageTokenizerConfig
    from image_tokenizer.modeling import VQModel

    config = ImageTokenizerConfig(resolution=SIDE, ch=32, ch_mult=(1, 2), decoder_ch_mult=(1, 4), z_channels=16)
    model = VQModel(config)
    assert model.decoder.up[1].block[0].conv1.out_channels == 128 and model.encoder.down[1].block[0].conv1.out_channels == 64
    assert model.decode_ids(torch.zeros(1, 16, 16, dtype=torch.long)).shape == (1, 3, SIDE, SIDE)


# ----- the output, the CLI, Hub ids -----
def test_cli_writes_an_ordinary_saved_tokenizer_with_a_card_naming_source_and_license(tmp_path, capsys):
    diffusers_reference().save_pretrained(tmp_path / "vq")
    assert main(["convert", str(tmp_path / "vq"), "--output", str(tmp_path / "out")]) == 0
    for name in ("config.json", "model.safetensors", "codebook.safetensors", "vocab.json", "README.md"):
        assert (tmp_path / "out" / name).is_file()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "diffusers" in card and str(tmp_path / "vq") in card and "Respect the original license" in card
    assert "image-tokenizer convert" in card
    loaded = ImageTokenizer.from_pretrained(tmp_path / "out")
    assert loaded.card_info["conversion"]["format"] == "diffusers"
    assert torch.equal(loaded.encode(np.zeros((SIDE, SIDE, 3), np.uint8)),
                       image_tokenizer.convert(tmp_path / "vq").encode(np.zeros((SIDE, SIDE, 3), np.uint8)))


def test_a_hub_id_converts_from_the_cache_while_offline(tmp_path):
    from tests.test_hub import fill_cache

    reference = diffusers_reference()
    reference.save_pretrained(tmp_path / "vq")
    cache = tmp_path / "cache"
    fill_cache(cache, "someone/tiny-vqmodel", {f.name: f.read_bytes() for f in (tmp_path / "vq").iterdir()})
    tok = image_tokenizer.convert("someone/tiny-vqmodel", cache_dir=cache)
    x = pixels()
    with torch.no_grad():
        expected = reference.quantize(reference.encode(x).latents)[2][2].reshape(3, 16, 16)
    assert_same_ids(tok.model.encode_ids(x), expected)
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache while offline"):
        image_tokenizer.convert("someone/not-cached", cache_dir=cache)


# ----- bad input -----
def test_unknown_format_is_named(tmp_path):
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "notes.txt").write_text("hello")
    with pytest.raises(ConversionError, match="unknown format"):
        image_tokenizer.convert(tmp_path / "weird")
    with pytest.raises(ConversionError, match="unknown format 'vqgan2'"):
        image_tokenizer.convert(tmp_path / "weird", format="vqgan2")
    with pytest.raises(ConversionError, match=r"notes\.txt: unknown format. This file"):
        image_tokenizer.convert(tmp_path / "weird" / "notes.txt")
    (tmp_path / "weird" / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ConversionError, match=r"garbage\.pt: not a readable PyTorch checkpoint"):
        image_tokenizer.convert(tmp_path / "weird" / "garbage.pt")


def test_a_config_that_disagrees_with_the_weights_names_the_key(tmp_path):
    janus_reference().save_pretrained(tmp_path / "janus")
    config = tmp_path / "janus" / "config.json"
    config.write_text(config.read_text().replace('"latent_channels": 32', '"latent_channels": 64'))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*mis-shaped tensors.*encoder\.conv_out\.weight"):
        image_tokenizer.convert(tmp_path / "janus")


def test_unexpected_key_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    janus_reference().save_pretrained(tmp_path / "janus")
    file = tmp_path / "janus" / "model.safetensors"
    state = load_file(str(file))
    state["encoder.extra_layer.weight"] = torch.zeros(2)
    save_file(state, str(file))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*unexpected keys \[encoder\.extra_layer\.weight\]"):
        image_tokenizer.convert(tmp_path / "janus")
    state.pop("encoder.extra_layer.weight")
    state["vision_tower.weight"] = torch.zeros(2)  # outside every part this format knows
    save_file(state, str(file))
    with pytest.raises(ConversionError, match="unexpected key 'vision_tower.weight'"):
        image_tokenizer.convert(tmp_path / "janus")


def test_a_checkpoint_needing_arbitrary_unpickling_is_refused_without_running_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "llamagen"
    folder.mkdir()
    torch.save({"model": {"quantize.embedding.weight": torch.zeros(4, 2)}, "args": Payload()}, folder / "vq.pt")
    with pytest.raises(ConversionError, match=r"vq\.pt: refusing to unpickle builtins\.print"):
        image_tokenizer.convert(folder, format="llamagen")


def test_non_float_or_non_finite_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    janus_reference().save_pretrained(tmp_path / "janus")
    file = tmp_path / "janus" / "model.safetensors"
    state = load_file(str(file))
    state["quant_conv.bias"] = torch.full_like(state["quant_conv.bias"], float("nan"))
    save_file(state, str(file))
    with pytest.raises(CheckpointError, match="'quant_conv.bias' holds NaN"):
        image_tokenizer.convert(tmp_path / "janus")


def test_cli_bad_source_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nothing-here"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nothing-here" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# `image_tokenizer.convert` stays the function after a converter module is imported, in a fresh interpreter: checked in
# tests/test_auto.py's fresh interpreter, which starts one anyway.
