"""TiTok (bytedance/1d-tokenizer) converts with identical ids: the golden files of tests/golden/make_titok_golden.py
hold two tiny random TiTok models built and run with the publisher's own code (its header names the commit), one
non-legacy (pixels) and one legacy (MaskGIT-VQGAN proxy codes and pixel decoder), with their release config.json,
weights, 8-bit images, ids and reconstructions. Each test writes the release folder (config.json +
model.safetensors, as TiTok.save_pretrained does) and converts it.

The golden models are tiny because the golden script reads blocks.py's size table with tiny numbers for "small"
and "base"; the `tiny_sizes` fixture gives our converter's table the same numbers, and nothing else differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import image_tokenizer
from image_tokenizer import ConversionError, ImageTokenizer
from image_tokenizer.cli import main
from image_tokenizer.converters import titok

GOLDEN = Path(__file__).parent / "golden" / "titok"
NEAR_TIE = 1e-4  # squared-distance gaps below this could flip with float rounding (measured: the smallest is 1.1e-3)


@pytest.fixture(autouse=True)
def tiny_sizes(monkeypatch):
    """The golden script's size table: "small" and "base" stand for the tiny encoder and decoder."""
    monkeypatch.setitem(titok.MODEL_SIZES, "small", (16, 2, 2))
    monkeypatch.setitem(titok.MODEL_SIZES, "base", (24, 1, 3))


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / f"{name}.safetensors"))


def write_release(folder: Path, name: str, config_change=None, drop: str | None = None,
                  replace: dict[str, torch.Tensor] | None = None) -> Path:
    """TiTok.save_pretrained's folder: config.json (theirs, optionally changed) and model.safetensors (float32;
    optionally without the tensors under `drop`, or with some replaced)."""
    data = golden(name)
    weights = {k[len("weights."):]: v.float() for k, v in data.items() if k.startswith("weights.")}
    if drop:
        weights = {k: v for k, v in weights.items() if not k.startswith(drop)}
    weights.update(replace or {})
    folder.mkdir()
    save_file(weights, str(folder / "model.safetensors"))
    config = json.loads((GOLDEN / f"{name}.json").read_text())
    if config_change:
        config_change(config)
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    return folder


@pytest.mark.parametrize("name", ["pixels", "legacy"])
def test_titok_converts_with_the_publishers_ids_and_reconstructions(tmp_path, name):
    tok = image_tokenizer.convert(write_release(tmp_path / "release", name))  # detected: no --format
    data = golden(name)
    assert tok.card_info["conversion"]["format"] == "titok"
    assert tok.config.architecture == "titok" and tok.layout.kind == "1d" and tok.config.vit.legacy == (name == "legacy")
    assert tok.config.quantizer.distance == ("cosine" if name == "legacy" else "l2")  # use_l2_norm true / false
    assert data["margin"].min() > NEAR_TIE  # no near-tie: every id must match exactly
    ids = tok.encode(list(data["pixels"].numpy()))  # 8-bit images, [0, 1] input as theirs
    assert ids.shape == data["ids"].shape and torch.equal(ids, data["ids"])
    with torch.no_grad():
        decoded = tok.model.decode_ids(data["ids"])
    torch.testing.assert_close(decoded, data["reconstruction"], atol=1e-4, rtol=1e-4)


def test_cli_converts_saves_and_loads_with_the_same_ids(tmp_path):
    write_release(tmp_path / "release", "legacy")
    assert main(["convert", str(tmp_path / "release"), "--format", "titok", "--output", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    for words in ("titok", "Apache-2.0", "image-tokenizer convert", "5 per image"):
        assert words in card
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["layout"] == {"kind": "1d", "shape": [5], "ids_per_image": 5,
                                "order": "the latent tokens in order (no spatial order)"}
    data = golden("legacy")
    loaded = ImageTokenizer.from_pretrained(tmp_path / "out")
    assert torch.equal(loaded.encode(list(data["pixels"].numpy())), data["ids"])
    encoded = loaded(list(data["pixels"].numpy()), return_tensors="pt")
    assert encoded["input_ids"].shape == (4, 5 + 2)
    pixels = loaded.batch_decode(encoded["input_ids"], output_type="pt")
    torch.testing.assert_close(pixels, data["reconstruction"].clamp(0, 1), atol=1e-4, rtol=0)


# ----- bad input -----
def test_ids_of_the_wrong_length_are_our_error(tmp_path, capsys):
    tok = image_tokenizer.convert(write_release(tmp_path / "release", "pixels"))
    with pytest.raises(image_tokenizer.InvalidIdsError, match="a 1d image holds 8 ids .*got 9"):
        tok.decode(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(image_tokenizer.InvalidIdsError, match="a 1d image holds 8 ids .*got 7"):
        tok.batch_decode([[tok.boi_token_id, *[0] * 7, tok.eoi_token_id]])
    tok.save_pretrained(tmp_path / "ours")
    np.save(tmp_path / "ids.npy", np.zeros((2, 9), np.int64))
    assert main(["decode", str(tmp_path / "ids.npy"), "--model", str(tmp_path / "ours"), "--output", str(tmp_path / "x.png")]) == 2
    assert f"{tmp_path / 'ids.npy'}: a 1d image holds 8 ids (its latent tokens), got 9" in capsys.readouterr().err


def test_num_latent_tokens_that_disagrees_with_the_weights_names_the_file_and_field(tmp_path):
    folder = write_release(tmp_path / "release", "pixels",
                           lambda c: c["model"]["vq_model"].update(num_latent_tokens=32))
    with pytest.raises(ConversionError, match=r"config\.json: model\.vq_model\.num_latent_tokens is 32, but "
                                              r"model\.safetensors holds 8 latent tokens"):
        image_tokenizer.convert(folder)


def test_a_legacy_checkpoint_without_its_pixel_decoder_is_refused(tmp_path):
    for drop in ("pixel_decoder.", "pixel_quantize."):
        folder = write_release(tmp_path / drop, "legacy", drop=drop)
        with pytest.raises(ConversionError, match=r"model\.safetensors: no MaskGIT-VQGAN pixel decoder .*"
                                                  r"model\.vq_model\.finetune_decoder"):
            image_tokenizer.convert(folder)
    empty = write_release(tmp_path / "empty", "legacy", replace={"pixel_decoder.up.0.block.0.conv1.weight": torch.zeros(0, 32, 3, 3)})
    with pytest.raises(ConversionError, match=r"model\.safetensors: tensor 'pixel_decoder\.up\.0\.block\.0\.conv1\.weight' has no output"):
        image_tokenizer.convert(empty)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["model"]["vq_model"].update(num_latent_tokens="${model.generator.image_seq_len}"),
         r"'model\.vq_model\.num_latent_tokens' is the unresolved OmegaConf interpolation .* never evaluates"),
        (lambda c: c["model"]["vq_model"].pop("token_size"), r"field 'model\.vq_model\.token_size' is missing"),
        (lambda c: c["dataset"].pop("preprocessing"), r"field 'dataset\.preprocessing\.crop_size' is missing"),
        (lambda c: c["model"]["vq_model"].update(quantize_mode="vae"), "continuous \\(VAE\\) TiTok tokens are not ids"),
        (lambda c: c["model"]["vq_model"].update(finetune_decoder=False),
         "is_legacy is True but finetune_decoder is False, a stage-1 model"),
        (lambda c: c["model"]["vq_model"].update(vit_enc_model_size="huge"), "vit_enc_model_size' must be one of"),
        (lambda c: c["model"]["vq_model"].update(vit_dec_model_size="small"),
         "vit_dec_model_size 'small' means width 16 and 2 layers, but the decoder"),
        (lambda c: c["model"]["vq_model"].update(vit_dec_patch_size=8),
         r"pixel decoder upsamples by .* = 4, which must equal vit\.decoder_patch_size 8"),
    ],
)
def test_config_fields_we_cannot_use_are_named(tmp_path, change, message):
    folder = write_release(tmp_path / "release", "legacy", change)
    with pytest.raises(ConversionError, match=message) as caught:
        image_tokenizer.convert(folder)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)


def test_another_resolution_is_refused(tmp_path):
    folder = write_release(tmp_path / "release", "pixels")
    with pytest.raises(ConversionError, match="position embeddings fix its resolution at dataset.preprocessing.crop_size 16"):
        image_tokenizer.convert(folder, resolution=32)


def test_detection_needs_the_titok_fields_and_the_weights(tmp_path):
    folder = write_release(tmp_path / "release", "pixels", lambda c: c["model"]["vq_model"].pop("vit_enc_model_size"))
    with pytest.raises(ConversionError, match="unknown format.*a TiTok folder"):
        image_tokenizer.convert(folder)
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(GOLDEN / "pixels.json", config_only / "config.json")
    with pytest.raises(ConversionError, match="no model.safetensors beside config.json"):
        image_tokenizer.convert(config_only)


def test_a_config_that_implies_a_huge_vit_is_refused_before_anything_is_allocated(tmp_path, hostile):
    """crop_size 16384 with 1-pixel patches: 268 million patch positions, whose position embeddings alone would
    take 512 GiB at TiTok-S's width; refused from the meta-device count, under the 1 GiB bound. The weights only
    carry what the converter compares with the size names (TiTok-S: 512 wide, 8 layers)."""
    from tests.hostile import PEAK_LIMIT

    folder = tmp_path / "release"
    folder.mkdir()
    weights = {"latent_tokens": torch.zeros(8, 512), "quantize.embedding.weight": torch.zeros(16, 4)}
    for part in ("encoder", "decoder"):
        weights[f"{part}.class_embedding"] = torch.zeros(1, 512)
        weights.update({f"{part}.transformer.{i}.ln_1.weight": torch.zeros(1) for i in range(8)})
    save_file(weights, str(folder / "model.safetensors"))
    config = json.loads((GOLDEN / "pixels.json").read_text())
    config["model"]["vq_model"].update(vit_enc_model_size="small", vit_dec_model_size="small", vit_enc_patch_size=1,
                                       vit_dec_patch_size=1, codebook_size=16, token_size=4)
    config["dataset"]["preprocessing"]["crop_size"] = 16384
    (folder / "config.json").write_text(json.dumps(config))
    outcome = hostile.call("image_tokenizer.converters:convert", str(folder))
    assert outcome.refused("CheckpointError"), outcome.message
    assert "parameters and buffers" in outcome.message and "resolution=16384, vit patch sizes 1/1" in outcome.message
    assert "\n" not in outcome.message
    assert outcome.peak_bytes < PEAK_LIMIT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vit": None}, "architecture 'titok' needs a vit section"),
        ({"architecture": "vqgan", "use_quant_conv": True, "use_post_quant_conv": True}, "vit applies to architecture 'titok'"),
        ({"use_quant_conv": True}, "set use_quant_conv, use_post_quant_conv and encoder_only to false"),
        ({"quantizer": {"kind": "fsq", "levels": [4, 4]}}, "quantizes with kind 'vq'"),
        ({"resolution": 18}, "resolution 18 is not a multiple of vit.encoder_patch_size 4"),
        ({"vit": {"encoder_width": 15}}, "vit.encoder_width 15 is not divisible by vit.encoder_heads 2"),
        ({"vit": {"num_latent_tokens": 10**6}}, "vit.num_latent_tokens must be an integer from 1 to 65,536"),
        ({"vit": {"legacy": "yes"}}, "field vit.legacy must be true or false"),
    ],
)
def test_titok_config_rules_are_config_errors(change, message):
    """What a titok config must be, checked where configs are checked (a saved config.json goes the same way)."""
    from image_tokenizer import ConfigError, ImageTokenizerConfig
    from tests.helpers import tiny_titok_config

    data = tiny_titok_config().to_dict()
    for key in ("layout", "grid_size"):
        data.pop(key)
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key == "vit" else value
    with pytest.raises(ConfigError, match=message):
        ImageTokenizerConfig.from_dict(data)
