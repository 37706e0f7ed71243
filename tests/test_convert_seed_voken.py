"""TencentARC's SEED-Voken formats convert with identical ids: Open-MAGVIT2 (lookup-free, 18 bits) and IBQ
(dot-product VQ). Each test saves random weights as the publisher does (a Lightning `.ckpt` whose state_dict
holds the weights, LitEma copies and loss modules, beside the LightningCLI yaml), converts, and compares ids and
reconstructions on the same 8-bit pixels with the publisher's code: for Open-MAGVIT2 the PyPI package
`open-magvit2` (`pip install --no-deps open-magvit2`; skipped without it), for IBQ the golden files of
tests/golden/make_ibq_golden.py (made with SEED-Voken's own modules, whose header names the commit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import image_tokenizer
from image_tokenizer import ConversionError, ImageTokenizer
from image_tokenizer.cli import main

GOLDEN = Path(__file__).parent / "golden"
SIDE = 32
NEAR_TIE = 1e-4  # top-two margins below this may flip with float rounding (measured: none in these tests)


def lightning_checkpoint(state: dict[str, torch.Tensor], path: Path) -> None:
    """What `Trainer.save_checkpoint` writes, minus objects a weights-only read would refuse."""
    torch.save({"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "2.2.0", "state_dict": state,
                "loops": {}, "callbacks": {}, "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}],
                "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": {"learning_rate": 1e-4}}, path)


def with_training_entries(weights: dict[str, torch.Tensor], use_ema: bool, seed: int = 7) -> dict[str, torch.Tensor]:
    """The state_dict of a training run: with use_ema the given weights are LitEma's copies and the raw training
    weights are other values; the discriminator and LPIPS sit under loss.*."""
    generator = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=generator) for k, v in weights.items()} if use_ema else dict(weights)
    if use_ema:
        state.update({"model_ema." + k.replace(".", ""): v for k, v in weights.items()})
        state.update({"model_ema.decay": torch.tensor(0.999), "model_ema.num_updates": torch.tensor(-1)})
    state["loss.discriminator.blocks.0.conv.weight"] = torch.zeros(8, 3, 4, 4)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(8, 3, 3, 3)
    return state


def uint8_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE, 3), dtype=np.uint8)


def publisher_input(pixels: np.ndarray) -> torch.Tensor:
    """Their data loaders' input: image / 127.5 - 1, NCHW float32."""
    return torch.from_numpy((pixels / 127.5 - 1.0).astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def assert_ids_equal_but_near_ties(ours: torch.Tensor, theirs: torch.Tensor, margin: torch.Tensor) -> None:
    differ = ours != theirs
    assert (margin[differ] < NEAR_TIE).all(), f"{int(differ.sum())} ids differ, margins {margin[differ].tolist()}"
    assert differ.float().mean() < 0.005


# ----- Open-MAGVIT2 -----
MAGVIT2_YAML = """model:
  class_path: src.Open_MAGVIT2.models.lfqgan.VQModel
  init_args:
    ddconfig:
      double_z: False
      z_channels: {z}
      resolution: 128
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 2, 2]
      num_res_blocks: 1
    lossconfig:
      target: src.Open_MAGVIT2.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {{disc_start: 0, disc_weight: 0.8, codebook_weight: 0.1, commit_weight: 0.25}}
    n_embed: {n_embed}
    embed_dim: {z}
    learning_rate: 1e-4
    sample_minimization_weight: 1.0
    batch_maximization_weight: 1.0
    scheduler_type: "None"
    use_ema: {use_ema}
data:
  class_path: main.DataModuleFromConfig
  init_args:
    batch_size: 8
    validation:
      target: src.Open_MAGVIT2.data.imagenet.ImageNetValidation
      params:
        config:
          size: {side}
"""


def magvit2_reference(bits: int = 18):
    improved = pytest.importorskip("open_magvit2.taming.modules.diffusionmodules.improved_model",
                                   reason="open-magvit2 is not installed (pip install --no-deps open-magvit2)")
    lfq = pytest.importorskip("open_magvit2.taming.modules.vqvae.lookup_free_quantize")
    dd = {"ch": 32, "out_ch": 3, "in_channels": 3, "num_res_blocks": 1, "z_channels": bits, "ch_mult": [1, 2, 2],
          "resolution": 128}
    parts = torch.nn.ModuleDict({"encoder": improved.Encoder(**dd), "decoder": improved.Decoder(**dd)})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in parts.named_parameters():
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=generator) * (0.2 if p.ndim > 1 else 0.1) + base)
    quantizer = lfq.LFQ(dim=bits, codebook_size=2**bits, sample_minimization_weight=1.0, batch_maximization_weight=1.0)
    return parts.eval(), quantizer.eval()


def write_magvit2_release(folder: Path, parts: torch.nn.Module, use_ema: bool = True, bits: int = 18,
                          yaml: bool = True) -> Path:
    folder.mkdir()
    lightning_checkpoint(with_training_entries(parts.state_dict(), use_ema), folder / "imagenet_256_L.ckpt")
    if yaml:
        (folder / "imagenet_lfqgan_256_L.yaml").write_text(
            MAGVIT2_YAML.format(z=bits, n_embed=2**bits, use_ema=use_ema, side=SIDE))
    return folder / "imagenet_256_L.ckpt"


@pytest.mark.parametrize("use_ema", [True, False])
def test_open_magvit2_converts_with_identical_ids_and_reconstructions(tmp_path, use_ema, capsys):
    parts, quantizer = magvit2_reference()
    write_magvit2_release(tmp_path / "release", parts, use_ema)
    tok = image_tokenizer.convert(tmp_path / "release")
    err = capsys.readouterr().err
    assert "loss.* (discriminator and LPIPS, 2)" in err and ("EMA weights" in err) == use_ema
    assert tok.card_info["conversion"]["format"] == "open-magvit2"
    assert tok.config.architecture == "magvit2" and tok.config.quantizer.kind == "lfq"
    assert tok.config.preprocessing.alpha_background == (0, 0, 0)  # SEED-Voken's loaders: convert("RGB")
    assert tok.vocab_size == 2**18 and tok.grid_size == (8, 8)
    pixels = uint8_images(3)
    with torch.no_grad():
        latent = parts["encoder"](publisher_input(pixels))
        _, _, expected = quantizer(latent)
        expected = expected.reshape(3, 8, 8)
        ours = tok.encode(list(pixels))
        margin = latent.abs().amin(dim=1)  # a bit flips only where a channel is near 0
        assert_ids_equal_but_near_ties(ours, expected, margin)
        codes = quantizer.get_codebook_entry(expected.reshape(3, -1), (3, 8, 8, 18), None)
        torch.testing.assert_close(tok.model.decode_ids(expected), parts["decoder"](codes), atol=1e-4, rtol=1e-4)


def test_a_converted_open_magvit2_saves_small_and_loads_with_the_same_ids(tmp_path):
    parts, _ = magvit2_reference()
    write_magvit2_release(tmp_path / "release", parts)
    assert main(["convert", str(tmp_path / "release"), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "codebook.safetensors").stat().st_size < 10_000  # 2^18 codes implied, not stored
    assert (tmp_path / "out" / "vocab.json").stat().st_size < 10_000
    card = (tmp_path / "out" / "README.md").read_text()
    assert "open-magvit2" in card and "channel 0 the lowest bit" in card and "Apache-2.0" in card
    loaded = ImageTokenizer.from_pretrained(tmp_path / "out")
    pixels = list(uint8_images(2))
    assert torch.equal(loaded.encode(pixels), image_tokenizer.convert(tmp_path / "release").encode(pixels))


def test_open_magvit2_id_bits_are_lsb_first_channel_0_lowest(tmp_path):
    """The spec of an id, independent of any network: channel i > 0 sets bit i."""
    parts, quantizer = magvit2_reference()
    write_magvit2_release(tmp_path / "release", parts)
    tok = image_tokenizer.convert(tmp_path / "release")
    latent = -torch.ones(1, 18, 1, 2)
    latent[0, 0, 0, 0] = 1.0  # channel 0 alone -> id 1
    latent[0, 17, 0, 1] = 1.0  # channel 17 alone -> id 2^17
    assert tok.model.quantizer.encode_ids(latent).tolist() == [[[1, 2**17]]]
    assert quantizer(latent)[2].tolist() == [1, 2**17]


def test_open_magvit2_without_yaml_infers_the_shapes_and_says_so(tmp_path, capsys):
    parts, _ = magvit2_reference()
    checkpoint = write_magvit2_release(tmp_path / "release", parts, use_ema=True, yaml=False)
    tok = image_tokenizer.convert(checkpoint)  # detected by the decoder's adaptive norms
    assert "shapes inferred from the weights" in capsys.readouterr().err
    assert tok.config.resolution == 256  # the published resolution, where no yaml names the data size
    with_yaml = tmp_path / "with-yaml"
    write_magvit2_release(with_yaml, parts, use_ema=True)
    reference = image_tokenizer.convert(with_yaml)
    assert image_tokenizer.convert(checkpoint, resolution=SIDE).config.to_dict() == reference.config.to_dict()
    ours, theirs = tok.model.state_dict(), reference.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


# ----- IBQ (golden files from SEED-Voken's own modules) -----
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "ibq_tiny.safetensors"))


def write_ibq_release(folder: Path, use_ema: bool = True, yaml_text: str | None = None,
                      extra: dict[str, torch.Tensor] | None = None) -> Path:
    data = golden()
    weights = {k[len("state_dict."):]: v.float() for k, v in data.items() if k.startswith("state_dict.")}
    folder.mkdir()
    lightning_checkpoint({**with_training_entries(weights, use_ema), **(extra or {})}, folder / "ibq_16384.ckpt")
    text = (GOLDEN / "ibq_tiny.yaml").read_text() if yaml_text is None else yaml_text
    if text:
        (folder / "imagenet_ibqgan_16384.yaml").write_text(text.replace("use_ema: true", f"use_ema: {str(use_ema).lower()}"))
    return folder / "ibq_16384.ckpt"


@pytest.mark.parametrize("use_ema", [True, False])
def test_ibq_converts_with_the_publishers_ids_and_reconstructions(tmp_path, use_ema):
    write_ibq_release(tmp_path / "release", use_ema)
    tok = image_tokenizer.convert(tmp_path / "release")
    assert tok.card_info["conversion"]["format"] == "ibq"
    assert tok.config.architecture == "vqgan" and tok.config.quantizer.distance == "dot"
    assert tok.config.preprocessing.alpha_background == (0, 0, 0)  # SEED-Voken's loaders: convert("RGB")
    data = golden()
    ours = tok.encode(list(data["pixels"].numpy()))
    assert_ids_equal_but_near_ties(ours, data["ids"], data["margin"])
    with torch.no_grad():
        decoded = tok.model.decode_ids(data["ids"])
    torch.testing.assert_close(decoded, data["reconstruction"], atol=1e-4, rtol=1e-4)


def test_ibq_lookup_is_the_unnormalised_dot_product_not_l2():
    """argmax z.e prefers long codes where the nearest code (argmin ||z - e||) does not: the two disagree."""
    from image_tokenizer import ImageTokenizerConfig

    config = ImageTokenizerConfig(quantizer={"codebook_size": 2, "codebook_dim": 2, "kind": "vq", "distance": "dot"})
    tok = ImageTokenizer(config)
    tok.model.quantizer.set_codebook(torch.tensor([[1.0, 0.0], [3.0, 3.0]]))
    z = torch.tensor([1.0, 0.2]).reshape(1, 2, 1, 1)  # nearest: code 0; largest dot product: code 1 (3.6 > 1.0)
    assert tok.model.quantizer.encode_ids(z).item() == 1


def test_ibq_without_yaml_needs_the_format_and_infers_the_shapes(tmp_path, capsys):
    checkpoint = write_ibq_release(tmp_path / "release", yaml_text="")
    with pytest.raises(ConversionError, match="unknown format"):
        image_tokenizer.convert(checkpoint)  # taming's and IBQ's keys are the same: only the yaml tells them apart
    tok = image_tokenizer.convert(checkpoint, format="ibq", resolution=SIDE)
    assert "shapes inferred from the weights" in capsys.readouterr().err
    data = golden()
    assert_ids_equal_but_near_ties(tok.encode(list(data["pixels"].numpy())), data["ids"], data["margin"])


# ----- the output and the CLI -----
def test_cli_writes_a_saved_tokenizer_whose_card_records_source_format_license_ids_and_command(tmp_path, capsys):
    write_ibq_release(tmp_path / "release")
    assert main(["convert", str(tmp_path / "release"), "--output", str(tmp_path / "out"), "--format", "ibq"]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    for words in ("ibq", str(tmp_path / "release"), "Apache-2.0", "argmax", "image-tokenizer convert"):
        assert words in card
    loaded = ImageTokenizer.from_pretrained(tmp_path / "out")
    data = golden()
    assert_ids_equal_but_near_ties(loaded.encode(list(data["pixels"].numpy())), data["ids"], data["margin"])


# ----- bad input -----
def test_a_ckpt_that_is_not_lightnings_is_refused_naming_the_file(tmp_path):
    folder = tmp_path / "release"
    write_ibq_release(folder)
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(2)}}, folder / "ibq_16384.ckpt")
    with pytest.raises(ConversionError, match=r"ibq_16384\.ckpt: not a Lightning checkpoint.*'state_dict'"):
        image_tokenizer.convert(folder)


@pytest.mark.parametrize("old, new, key", [
    ("n_embed: 1024", "n_embed: 2048", "model.init_args.n_embed is 2048 but the weights in ibq_16384.ckpt have 1024"),
    ("ch: 32", "ch: 64", "model.init_args.ddconfig.ch is 64"),
    ("num_res_blocks: 1", "num_res_blocks: 2", "model.init_args.ddconfig.num_res_blocks is 2"),
    ("  - 16\n", "  - 32\n", r"model.init_args.ddconfig.attn_resolutions is \[32\]"),
])
def test_a_yaml_that_disagrees_with_the_weights_names_file_and_key(tmp_path, old, new, key):
    text = (GOLDEN / "ibq_tiny.yaml").read_text()
    assert old in text
    write_ibq_release(tmp_path / "release", yaml_text=text.replace(old, new, 1))
    with pytest.raises(ConversionError, match=rf"imagenet_ibqgan_16384\.yaml: {key}"):
        image_tokenizer.convert(tmp_path / "release")


def test_unknown_keys_are_refused_by_name_and_training_keys_named_in_one_line(tmp_path, capsys):
    write_ibq_release(tmp_path / "release", extra={"vision_tower.weight": torch.zeros(2)})
    with pytest.raises(ConversionError, match="unexpected key 'vision_tower.weight'"):
        image_tokenizer.convert(tmp_path / "release")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss.*" in err[0] and "model_ema.*" in err[0]


def test_a_missing_ema_copy_is_named_and_a_release_without_copies_converts_its_weights(tmp_path, capsys):
    checkpoint = write_ibq_release(tmp_path / "release")
    state = torch.load(checkpoint, weights_only=True)
    del state["state_dict"]["model_ema.encoderconv_inweight"]
    torch.save(state, checkpoint)
    with pytest.raises(ConversionError, match=r"EMA copy of 'encoder.conv_in.weight'"):
        image_tokenizer.convert(tmp_path / "release")
    stripped = write_ibq_release(tmp_path / "stripped", use_ema=False)  # the EMA weights alone, as a release keeps them
    yaml_file = tmp_path / "stripped" / "imagenet_ibqgan_16384.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("use_ema: false", "use_ema: true"))
    tok = image_tokenizer.convert(stripped)
    assert "holds no model_ema.* copies" in capsys.readouterr().err
    data = golden()
    assert_ids_equal_but_near_ties(tok.encode(list(data["pixels"].numpy())), data["ids"], data["margin"])
