"""RQ-VAE (kakaobrain/rq-vae-transformer) converts with identical ids. tests/golden/rqvae_tiny.{safetensors,yaml} hold
a tiny random-weight RQ-VAE (depth 4, 64 codes shared across depth, every layer perturbed) built and run by the
publisher's own code (tests/golden/make_rqvae_golden.py, whose header names the commit): its weights, its
config.yaml as their training setup writes it, 8-bit pixels, and their ids [B, h, w, D] and reconstructions. Each
test writes the release as they save it (model.pt: a dict whose state_dict repeats the shared codebook at every
depth, beside the discriminator and optimizer states) and converts it offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import image_tokenizer
from image_tokenizer import ConversionError, ImageTokenizer
from image_tokenizer.cli import main
from image_tokenizer.converters import detect_format

GOLDEN = Path(__file__).parent / "golden"
DEPTH, N_EMBED, EMBED_DIM = 4, 64, 8
NEAR_TIE = 1e-5  # a top-two distance gap below this could flip with float rounding (the golden file's smallest: 2.0e-4)


def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "rqvae_tiny.safetensors"))


def release_state() -> dict[str, torch.Tensor]:
    """Their state_dict: the shared codebook is one tensor under every quantizer.codebooks.{i}.weight."""
    state = {k[len("state_dict."):]: v.float() for k, v in golden().items() if k.startswith("state_dict.")}
    shared = state["quantizer.codebooks.0.weight"]
    return {k: shared if k.startswith("quantizer.codebooks.") and k.endswith(".weight") else v for k, v in state.items()}


def write_release(folder: Path, state: dict[str, torch.Tensor] | None = None, yaml_text: str | None = None,
                  checkpoint: dict | None = None) -> Path:
    """A stage-1 folder as their trainer saves it (rqvae/trainers/trainer_rqvae.py) beside its config.yaml."""
    folder.mkdir(parents=True)
    saved = checkpoint if checkpoint is not None else {
        "epoch": 10, "state_dict": release_state() if state is None else state,
        "discriminator": {"main.0.weight": torch.zeros(4, 3, 4, 4)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 4e-5, "betas": (0.5, 0.9), "params": [0, 1]}]},
        "scheduler": {"warmup": {"last_epoch": 5, "base_lrs": [4e-5]}, "after": {"last_epoch": 5}},
    }
    torch.save(saved, folder / "model.pt")
    (folder / "config.yaml").write_text((GOLDEN / "rqvae_tiny.yaml").read_text() if yaml_text is None else yaml_text)
    return folder


def test_rqvae_converts_with_the_publishers_ids_and_reconstructions(tmp_path, capsys):
    tok = image_tokenizer.convert(write_release(tmp_path / "release"))  # auto-detected
    assert tok.card_info["conversion"]["format"] == "rqvae"
    q = tok.config.quantizer
    assert (q.kind, q.depth, q.codebook_size, q.codebook_dim, q.distance) == ("residual", DEPTH, N_EMBED, EMBED_DIM, "l2")
    assert tok.config.preprocessing.alpha_background == (0, 0, 0)  # torchvision's loaders: convert("RGB")
    data = golden()
    ours = tok.encode(list(data["pixels"].numpy()))
    assert ours.shape == data["ids"].shape == (3, 16, 16, DEPTH)
    assert (data["margin"] > NEAR_TIE).all()  # no near-tie, so every id must agree
    assert torch.equal(ours, data["ids"])
    with torch.no_grad():
        decoded = tok.model.decode_ids(data["ids"])
    torch.testing.assert_close(decoded, data["reconstruction"], atol=1e-4, rtol=1e-4)
    images = tok.decode(data["ids"], output_type="pt")  # their get_recon_imgs: x * 0.5 + 0.5, clamped to [0, 1]
    torch.testing.assert_close(images, (data["reconstruction"] * 0.5 + 0.5).clamp(0, 1), atol=1e-4, rtol=0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "padding row" in err[0] and "8 EMA buffers" in err[0] and "discriminator" in err[0]


def test_the_padding_row_is_dropped_and_would_change_ids_if_kept(tmp_path):
    """Their lookup never considers row n_embed (zero, as padding_idx leaves it); it is nearer than every code to 92
    of the golden residuals (make_rqvae_golden.py counts them), so keeping it would show here."""
    tok = image_tokenizer.convert(write_release(tmp_path / "release"))
    stored = release_state()["quantizer.codebooks.0.weight"]
    assert torch.equal(tok.model.quantizer.codebook, stored[:-1]) and not stored[-1].any()
    tok.model.quantizer.codebook = torch.nn.Parameter(stored.clone())  # with the padding row as code 64
    with_padding = tok.encode(list(golden()["pixels"].numpy()))
    assert (with_padding == N_EMBED).any()


def test_a_pt_file_or_the_release_parent_folder_converts_and_the_cli_writes_a_card(tmp_path):
    release = write_release(tmp_path / "imagenet_480M" / "stage1")
    data = golden()
    from_file = image_tokenizer.convert(release / "model.pt")  # their load_model takes the .pt; config.yaml beside it
    assert torch.equal(from_file.encode(list(data["pixels"].numpy())), data["ids"])
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "imagenet_480M"), "--output", str(out)]) == 0
    card = (out / "README.md").read_text()
    for words in ("rqvae", "CC-BY-NC-SA-4.0", "depth 4", "image-tokenizer convert"):
        assert words in card
    loaded = ImageTokenizer.from_pretrained(out)
    assert loaded.config.layout.shape == (16, 16, DEPTH)
    assert torch.equal(loaded.encode(list(data["pixels"].numpy())), data["ids"])


# ----- bad input -----
def test_depth_that_disagrees_with_the_codebooks_names_config_and_field(tmp_path, capsys):
    text = (GOLDEN / "rqvae_tiny.yaml").read_text()
    three = text.replace("code_shape:\n    - 16\n    - 16\n    - 4", "code_shape:\n    - 16\n    - 16\n    - 3")
    assert three != text
    write_release(tmp_path / "release", yaml_text=three)
    with pytest.raises(ConversionError, match=r"config\.yaml: arch\.hparams\.code_shape gives depth 3, but model\.pt "
                                              r"holds 4 codebooks"):
        image_tokenizer.convert(tmp_path / "release")
    assert main(["convert", str(tmp_path / "release"), "--output", str(tmp_path / "out")]) == 2  # one line, exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arch.hparams.code_shape gives depth 3" in err[0] and not (tmp_path / "out").exists()


def test_a_model_pt_without_state_dict_is_refused_naming_the_file(tmp_path):
    write_release(tmp_path / "release", checkpoint={"model": release_state()})
    with pytest.raises(ConversionError, match=r"model\.pt: not an RQ-VAE checkpoint: .*'state_dict'.*found \['model'\]"):
        image_tokenizer.convert(tmp_path / "release")


@pytest.mark.parametrize("change, message", [
    ("no padding row", r"quantizer\.codebooks\.0\.weight has shape \(64, 8\); .* = \[65, 8\]"),
    ("unshared", r"quantizer\.codebooks\.2\.weight differs from quantizer\.codebooks\.0\.weight"),
])
def test_codebooks_of_the_wrong_shape_or_not_shared_name_file_and_key(tmp_path, change, message):
    state = release_state()
    if change == "no padding row":
        for i in range(DEPTH):
            state[f"quantizer.codebooks.{i}.weight"] = state[f"quantizer.codebooks.{i}.weight"][:-1]
    else:
        state["quantizer.codebooks.2.weight"] = state["quantizer.codebooks.2.weight"] + 1
    write_release(tmp_path / "release", state=state)
    with pytest.raises(ConversionError, match=rf"model\.pt: {message}"):
        image_tokenizer.convert(tmp_path / "release")


@pytest.mark.parametrize("old, new, message", [
    ("type: rq-vae", "type: rq-transformer", r"arch\.type is 'rq-transformer' \(a stage-2 RQ-Transformer"),
    ("shared_codebook: true", "shared_codebook: false", r"arch\.hparams\.shared_codebook is false"),
    ("n_embed: 64", "n_embed: [64, 64, 64, 64]", r"arch\.hparams\.n_embed is a list"),
    ("latent_shape:\n    - 16\n    - 16\n    - 8", "latent_shape:\n    - 32\n    - 32\n    - 8",
     r"arch\.hparams\.code_shape \[16, 16, 4\] groups several latent positions"),
    ("embed_dim: 8", "embed_dim: '8'", r"field 'arch\.hparams\.embed_dim' must be int"),
])
def test_a_config_yaml_that_is_not_a_supported_rqvae_names_file_and_field(tmp_path, old, new, message):
    text = (GOLDEN / "rqvae_tiny.yaml").read_text()
    assert old in text
    write_release(tmp_path / "release", yaml_text=text.replace(old, new, 1))
    with pytest.raises(ConversionError, match=rf"config\.yaml: {message}"):
        image_tokenizer.convert(tmp_path / "release")


def test_a_folder_that_is_not_rqvaes_is_not_detected_and_refused_with_the_format(tmp_path):
    folder = tmp_path / "other"
    write_release(folder, yaml_text="model:\n  target: taming.models.vqgan.VQModel\n")
    assert detect_format(folder) == "llamagen"  # a .pt without RQ-VAE's config: not ours
    with pytest.raises(ConversionError, match=r"config\.yaml: field 'arch' is missing"):
        image_tokenizer.convert(folder, format="rqvae")
    (folder / "config.yaml").unlink()
    with pytest.raises(ConversionError, match=r"an RQ-VAE release is a folder holding model\.pt and config\.yaml"):
        image_tokenizer.convert(folder, format="rqvae")


def test_unknown_keys_are_refused_by_name(tmp_path):
    write_release(tmp_path / "release", state={**release_state(), "quantizer.codebooks.0.usage": torch.zeros(64)})
    with pytest.raises(ConversionError, match=r"model\.pt: unexpected key 'quantizer\.codebooks\.0\.usage'"):
        image_tokenizer.convert(tmp_path / "release")
