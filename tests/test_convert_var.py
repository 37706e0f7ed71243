"""VAR's multi-scale VQVAE (FoundationVision) converts with identical ids: the golden files of
tests/golden/make_var_golden.py come from the publisher's own VQVAE (img_to_idxBl, idxBl_to_img) at the commit its
header names, on a tiny random model saved as VAR saves theirs (a plain torch.save of the state dict, .pth).

Near-ties: VAR's lookup is argmin ||r||^2 + ||e||^2 - 2 r.e in fp32 (using_znorm false); ours drops ||r||^2, the same
for every code of a row, which can change the winner only where two codes' distances differ by about fp32 rounding.
The smallest gap between the nearest and the second-nearest code over the golden lookups (`margin`) is 2.4e-3, far
above that, so every id must be equal, and is (650 of 650). The released model is checked by shape alone: a
state dict of meta tensors with the shapes of their VQVAE(vocab_size=4096, z_channels=32, ch=160,
share_quant_resi=4), which holds no weights (var_release_shapes.json, from their code).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import image_tokenizer
from image_tokenizer import ConversionError, ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.checkpoint import check_model_size
from image_tokenizer.cli import main
from image_tokenizer.converters import detect_format, var
from image_tokenizer.fileio import check_state_dict
from image_tokenizer.modeling.multiscale import phi_schedule

GOLDEN = Path(__file__).parent / "golden"
SCALES = (1, 2, 3, 4, 6, 8)  # the tiny model's, as the golden file's metadata records
RELEASED = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "var_tiny.safetensors"))


def tiny_state(golden: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("state_dict."):]: v.float() for k, v in golden.items() if k.startswith("state_dict.")}


def write_release(folder: Path, state: dict[str, torch.Tensor], name: str = "vae_tiny.pth") -> Path:
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / name)  # as VAR's release: torch.save(vae.state_dict())
    return folder / name


def assert_publishers_ids(tok: ImageTokenizer, golden: dict[str, torch.Tensor]) -> None:
    assert golden["margin"].min() > 1e-3  # no near-ties: every id must match (see the module docstring)
    ids = tok.encode(list(golden["pixels"].numpy()))
    assert ids.shape == golden["ids"].shape == (5, sum(p * p for p in SCALES))
    assert torch.equal(ids, golden["ids"])


def test_var_converts_with_the_publishers_ids_and_reconstructions(tmp_path, golden, capsys):
    write_release(tmp_path / "release", tiny_state(golden))
    tok = image_tokenizer.convert(tmp_path / "release", scales=SCALES)  # detected from the pickle's keys
    assert tok.card_info["conversion"]["format"] == "var"
    config = tok.config
    assert (config.quantizer.kind, config.quantizer.distance, config.quantizer.scales) == ("multiscale", "l2", SCALES)
    assert (config.quantizer.phi_convs, config.quantizer.phi_ratio, config.quant_conv_kernel_size) == (4, 0.5, 3)
    assert (config.resolution, config.grid_size, config.attn_resolutions) == (16, (8, 8), (8,))
    assert config.preprocessing.alpha_background == (0, 0, 0)  # VAR's pil_loader: .convert("RGB")
    assert "ema_vocab_hit_SV" in capsys.readouterr().err  # the dropped training statistic is named
    assert_publishers_ids(tok, golden)
    with torch.no_grad():
        decoded = tok.model.decode_ids(golden["ids"]).clamp(-1, 1)  # VAR clamps its output to [-1, 1]
    torch.testing.assert_close(decoded, golden["reconstruction"], atol=1e-4, rtol=1e-4)


def test_phi_schedule_is_vars_for_every_count_of_convs_and_scales(golden):
    """Their PhiPartiallyShared (share_quant_resi >= 2) and PhiNonShared (0) choose the conv of each scale as ours."""
    schedules = {k: v for k, v in golden.items() if k.startswith("phi_schedule.")}
    assert len(schedules) == 2 * 8 * 15
    for key, theirs in schedules.items():
        _, _, convs, scales = key.split(".")
        assert phi_schedule(int(scales), int(convs)) == theirs.tolist(), key


def test_the_unshared_and_shared_phi_layouts_map_onto_ours(tmp_path, golden):
    """PhiNonShared keys (quant_resi.{j}) of the same four convs choose as qresi_ls.{j} (the schedules above): the
    same ids. A single shared phi (quant_resi.qresi) is phi_convs 1."""
    state = {k.replace("quant_resi.qresi_ls.", "quant_resi."): v for k, v in tiny_state(golden).items()}
    write_release(tmp_path / "listed", state)
    assert_publishers_ids(image_tokenizer.convert(tmp_path / "listed", scales=SCALES), golden)
    shared = {k: v for k, v in tiny_state(golden).items() if "qresi_ls." not in k}
    shared.update({f"quantize.quant_resi.qresi.{p}": v for p, v in (("weight", state["quantize.quant_resi.0.weight"]),
                                                                    ("bias", state["quantize.quant_resi.0.bias"]))})
    write_release(tmp_path / "shared", shared)
    assert image_tokenizer.convert(tmp_path / "shared", scales=SCALES).config.quantizer.phi_convs == 1


def released_shapes_file(folder: Path) -> Path:
    shapes = json.loads((GOLDEN / "var_release_shapes.json").read_text())["shapes"]
    return write_release(folder, {k: torch.empty(v, device="meta") for k, v in shapes.items()}, "vae_ch160v4096z32.pth")


@pytest.mark.parametrize("scales, resolution", [(None, 256), ((1, 2, 3, 4, 6, 9, 13, 18, 24, 32), 512)])
def test_the_released_model_is_detected_and_sized_by_its_shapes_alone(tmp_path, scales, resolution):
    """The released state dict's keys and shapes, as meta tensors (no weights): detected, the released schedule
    (or VAR-d36's 512 one), 680 ids, and every tensor mapping onto our model strictly."""
    released_shapes_file(tmp_path / "release")
    assert detect_format(tmp_path / "release") == "var"
    converted = var.load(tmp_path / "release", scales=scales)
    config = converted.config
    assert (config.ch, config.ch_mult, config.num_res_blocks, config.z_channels) == (160, (1, 1, 2, 2, 4), 2, 32)
    assert (config.resolution, config.attn_resolutions, config.quant_conv_kernel_size) == (resolution, (resolution // 16,), 3)
    assert (config.quantizer.codebook_size, config.quantizer.codebook_dim, config.quantizer.phi_convs) == (4096, 32, 4)
    assert config.quantizer.scales == (scales or RELEASED)
    if scales is None:
        assert config.layout.ids_per_image == 680
    assert tuple(converted.codebook.shape) == (4096, 32)
    check_state_dict(converted.weights_file, converted.weights, check_model_size(config, converted.weights_file).weights_state_dict())


def test_cli_writes_a_tokenizer_whose_card_and_config_record_the_conversion(tmp_path, golden, capsys):
    write_release(tmp_path / "release", tiny_state(golden))
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "release"), "--output", str(out), "--scales", "1,2,3,4,6,8"]) == 0
    assert "130 (multiscale) tokens per 16x16 image" in capsys.readouterr().err
    card = (out / "README.md").read_text()
    for words in ("var", "MIT", "--scales 1,2,3,4,6,8", "coarse to fine", "130 per image"):
        assert words in card
    assert json.loads((out / "config.json").read_text())["quant_conv_kernel_size"] == 3
    assert_publishers_ids(ImageTokenizer.from_pretrained(out), golden)


def test_the_kernel_size_field_leaves_every_other_config_unchanged(tmp_path):
    """quant_conv_kernel_size is left out of config.json (and so of the fingerprint) at its default 1."""
    assert "quant_conv_kernel_size" not in ImageTokenizerConfig().to_dict()
    config = ImageTokenizerConfig(resolution=16, ch=32, ch_mult=(1, 1), z_channels=8, quant_conv_kernel_size=3,
                                  quantizer={"codebook_size": 16, "codebook_dim": 8})
    config.save(tmp_path)
    assert ImageTokenizerConfig.load(tmp_path) == config
    with pytest.raises(image_tokenizer.ConfigError, match="quant_conv_kernel_size must be an odd integer"):
        ImageTokenizerConfig(quant_conv_kernel_size=2)


# ----- bad input -----
def test_a_pth_that_is_not_vars_is_not_detected_and_refused_by_name(tmp_path, golden):
    state = {k: v for k, v in tiny_state(golden).items() if k != var.HITS}  # e.g. LlamaGen's keys: no scale counts
    write_release(tmp_path / "other", state)
    assert not var.detect(tmp_path / "other")
    with pytest.raises(ConversionError, match=r"other: no VAR VQVAE \.pth \(a state dict with 'quantize\.ema_vocab_hit_SV'"):
        image_tokenizer.convert(tmp_path / "other", format="var")
    torch.save({"model": tiny_state(golden)}, tmp_path / "wrapped.pth")  # VAR's keys, but not a plain state dict
    with pytest.raises(ConversionError, match=r"wrapped\.pth: expected a state dict \(tensors by name\)"):
        image_tokenizer.convert(tmp_path / "wrapped.pth")


@pytest.mark.parametrize("scales, message", [
    (None, (r"vae_tiny\.pth: field 'quantize\.ema_vocab_hit_SV' says the model was trained with 6 scales, not the "
           r"released 10 .*--scales")),
    ((1, 2, 4, 8), (r"vae_tiny\.pth: the schedule 1,2,4,8 has 4 scales but field 'quantize\.ema_vocab_hit_SV' says the "
                   r"model was trained with 6")),
    ((1, 2, 3, 5, 4, 8), r"vae_tiny\.pth: --scales: scales must be strictly increasing"),
])
def test_a_schedule_that_does_not_match_the_weights_names_file_and_field(tmp_path, golden, scales, message):
    write_release(tmp_path / "release", tiny_state(golden))
    with pytest.raises(ConversionError, match=message):
        image_tokenizer.convert(tmp_path / "release", scales=scales)


def test_a_schedule_whose_last_scale_is_not_the_grid_or_resolution_is_refused(tmp_path, golden):
    write_release(tmp_path / "release", tiny_state(golden))
    with pytest.raises(ConversionError, match=r"resolution 32 disagrees with the scales: the last scale 8 x the downsampling 2 is 16"):
        image_tokenizer.convert(tmp_path / "release", scales=SCALES, resolution=32)
    with pytest.raises(ConversionError, match="scales apply to multi-scale formats"):
        image_tokenizer.convert(tmp_path / "release", format="llamagen", scales=SCALES)


@pytest.mark.parametrize("change, message", [
    ({"drop": "quantize.quant_resi.qresi_ls.2.weight"},
     (r"must be numbered 0\.\.3, each with weight and bias \(up to the highest index found\); missing "
     r"'quantize\.quant_resi\.qresi_ls\.2\.weight'")),
    ({"rename": ("quantize.quant_resi.qresi_ls.3.", "quantize.quant_resi.3.")}, r"mix sharing styles \(list, qresi_ls\)"),
    ({"hits": (6, 128)}, r"field 'quantize\.ema_vocab_hit_SV' of shape \[6, 128\] must be \[scales, codebook size\]"),
])
def test_phi_convs_or_counts_that_disagree_name_file_and_field(tmp_path, golden, change, message):
    state = tiny_state(golden)
    if "drop" in change:
        del state[change["drop"]]
    if "rename" in change:
        old, new = change["rename"]
        state = {k.replace(old, new): v for k, v in state.items()}
    if "hits" in change:
        state[var.HITS] = torch.zeros(change["hits"])
    write_release(tmp_path / "release", state)
    with pytest.raises(ConversionError, match=rf"vae_tiny\.pth: .*{message}"):
        image_tokenizer.convert(tmp_path / "release", format="var", scales=SCALES)


def test_the_cli_refuses_a_bad_schedule_in_one_line(tmp_path, golden, capsys):
    write_release(tmp_path / "release", tiny_state(golden))
    assert main(["convert", str(tmp_path / "release"), "--output", str(tmp_path / "out"), "--scales", "1,2,3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "ema_vocab_hit_SV" in err[-1] and "vae_tiny.pth" in err[-1]
    assert not (tmp_path / "out").exists()


def test_a_pth_linked_from_outside_the_folder_is_refused_before_it_is_read(tmp_path, golden):
    outside = write_release(tmp_path / "elsewhere", tiny_state(golden))
    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "vae.pth").symlink_to(outside)
    with pytest.raises(ConversionError, match="outside"):
        image_tokenizer.convert(tmp_path / "release", format="var", scales=SCALES)


def test_a_schedule_too_large_for_any_image_is_refused_before_a_model_is_built(tmp_path):
    released_shapes_file(tmp_path / "release")
    with pytest.raises(ConversionError, match=r"vae_ch160v4096z32\.pth: resolution 1,600,000 is over the limit"):
        image_tokenizer.convert(tmp_path / "release", scales=(1, 2, 3, 4, 5, 6, 8, 10, 13, 100_000))


def test_a_key_with_a_huge_index_is_an_unexpected_key_not_a_crash(tmp_path, golden):
    """int() refuses strings of over 4,300 digits: indices are read only up to 6 digits, longer ones are unknown keys."""
    state = tiny_state(golden)
    state[f"quantize.quant_resi.qresi_ls.{'9' * 5000}.weight"] = torch.zeros(1)
    state[f"encoder.down.{'9' * 5000}.attn.0.norm.weight"] = torch.zeros(1)
    write_release(tmp_path / "release", state)
    with pytest.raises(ConversionError, match="unexpected key"):
        image_tokenizer.convert(tmp_path / "release", scales=SCALES)
